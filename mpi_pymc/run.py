"""The SPMD driver behind ``python -m mpi_pymc run``: thin glue over the pure parts.

Every rank runs :func:`run` with the same arguments. Ranks talk only at phase boundaries
(agreeing on errors, seed, fingerprints) and once per chunk (progress); never while sampling.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mpi_pymc import __version__
from mpi_pymc.checkpoint import Checkpoint
from mpi_pymc.config import RunConfig, UserError, resolve_chain_method, validate
from mpi_pymc.errors import AgreedError, agree
from mpi_pymc.errors import on_every_rank as _on_every_rank
from mpi_pymc.progress import Progress
from mpi_pymc.stopping import (
    RESUMABLE_STOPS,
    STOP_DRAWS,
    STOP_GOAL,
    STOP_JOB_END,
    STOP_MAX_TIME,
    STOP_SIGNAL,
    Deadline,
    goal_met,
    goal_progress,
    goal_reachable,
    next_chunk,
    slurm_end_time,
)

# Stop reasons agreed by an MPI MAX, in order of precedence (0: keep going).
_AGREED_STOPS = (None, STOP_MAX_TIME, STOP_JOB_END, STOP_SIGNAL)


@dataclass
class RunResult:
    out: str
    root_seed: int
    chains: int
    draws_completed: np.ndarray
    timings: dict = field(default_factory=dict)
    summary: dict | None = None
    stopped_by: str = STOP_DRAWS

    @property
    def resumable(self) -> bool:
        """Stopped early with a checkpoint (signal or deadline): ``--resume`` continues it."""
        return self.stopped_by in RESUMABLE_STOPS


def _versions() -> dict:
    import importlib.metadata as md

    from mpi4py import MPI

    found = {"python": platform.python_version(), "mpi_pymc": __version__}
    for name in (
        "pymc",
        "pytensor",
        "jax",
        "jaxlib",
        "numpyro",
        "blackjax",
        "mpi4py",
        "h5py",
        "arviz",
        "numpy",
    ):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    found["mpi_library"] = MPI.Get_library_version().replace("\0", "").splitlines()[0].strip()
    import h5py

    found["hdf5"] = h5py.version.hdf5_version
    return found


def _configure_jax(precision: str) -> None:
    """Precision, and a persistent compilation cache shared by ranks and later runs.

    ``MPI_PYMC_JAX_CACHE`` names the cache folder (default ``~/.cache/mpi_pymc/jax``; put it on
    a file system every node sees); ``off`` disables it.
    """
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")
    cache = os.environ.get("MPI_PYMC_JAX_CACHE", os.path.expanduser("~/.cache/mpi_pymc/jax"))
    if cache.lower() != "off":
        try:
            os.makedirs(cache, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            # Every program, the small ones too (initial points, sampler state, constrain,
            # fingerprint): a warm run of eight schools on this project's 2-core VM spent
            # 0.35 s less in init and sampling than with a 0.5 s floor, for 0.1 MiB more cache.
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        except OSError:
            pass  # an unwritable cache only costs compile time


def _remove_previous(out: str) -> None:
    """``--overwrite``: the old output, its shards and its checkpoint go."""
    from mpi_pymc import storage
    from mpi_pymc.checkpoint import checkpoint_path, remove_checkpoint

    storage.remove_output(out)
    remove_checkpoint(checkpoint_path(out))


def _check_output(config: RunConfig) -> None:
    """Refuse to damage existing files; done by rank 0 before anything is written."""
    out = str(config.out)
    exists = os.path.lexists(out)
    if exists and not (config.overwrite or config.resume):
        raise UserError(
            f"output '{out}' already exists: pass --overwrite to replace it, --resume to "
            "continue it, or --out to write elsewhere"
        )
    if config.resume and not exists:
        raise UserError(f"--resume given but '{out}' does not exist: run without --resume first")


def _check_output_directory(config: RunConfig) -> None:
    """The output's directory exists and takes files (rank 0)."""
    directory = os.path.dirname(os.path.abspath(str(config.out)))
    if not os.path.isdir(directory):
        raise UserError(f"output directory '{directory}' does not exist: create it first")
    import tempfile

    try:  # a real probe: permission bits do not tell root (or read-only mounts) the truth
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".mpi_pymc_probe"):
            pass
    except OSError as exc:
        raise UserError(
            f"output directory '{directory}' is not writable ({exc.strerror}): choose another --out"
        ) from None


def _claim_output(config: RunConfig):
    """Rank 0: take the output's lock, then judge the existing files — in this order, so no
    other job can change them between the verdict and the writes (see output_lock)."""
    from mpi_pymc import output_lock

    _check_output_directory(config)
    lock = output_lock.acquire(str(config.out), output_lock.stale_after_from())
    try:
        _check_output(config)
    except UserError:
        lock.release()
        raise
    return lock


def _flat_names(compiled) -> list[tuple[str, str, tuple]]:
    """(column label, variable, index) for every scalar of every posterior variable."""
    columns = []
    for var in compiled.posterior_vars:
        if not var.shape:
            columns.append((var.name, var.name, ()))
            continue
        for index in np.ndindex(*var.shape):
            labels = [str(compiled.coords[d][i]) for d, i in zip(var.dims, index, strict=True)]
            columns.append((f"{var.name}[{', '.join(labels)}]", var.name, index))
    return columns


class _StopRequest:
    """SIGTERM/SIGUSR1 (SLURM's walltime warning) ask every rank to stop after this chunk.

    From the Python API (``interrupt=True``) SIGINT does too, and a second SIGINT raises
    KeyboardInterrupt at once; the API puts the previous handlers back when the run returns.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def install(self, interrupt: bool = False) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals; the job's own stay as they are
        for name in (*self.SIGNALS, "SIGINT") if interrupt else self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self.previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    @classmethod
    def ignore_from_now(cls) -> None:
        """For a process that only exits after its run: a walltime signal arriving during
        teardown must not kill a finished rank, since exit 138 marks a complete job FAILED and
        hides the exit code 3 a requeue relies on. Python's finalisation resets the handlers it
        installed to the default (death) but leaves an ignored signal ignored. Children inherit
        ignored signals, so only a process about to exit may call this."""
        import signal

        for name in cls.SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    def _handle(self, number, frame) -> None:
        import signal

        name = signal.Signals(number).name
        if name == "SIGINT" and self.received:
            raise KeyboardInterrupt
        self.received = name


ignore_stop_signals = _StopRequest.ignore_from_now


def _local_stop(stop: _StopRequest, deadline: Deadline) -> int:
    """This rank's reason to stop after this chunk, as an index into ``_AGREED_STOPS``."""
    if stop.received:
        return _AGREED_STOPS.index(STOP_SIGNAL)
    return _AGREED_STOPS.index(deadline.reason_to_stop(time.time()))


def _agreed_stop(comm, stop: _StopRequest, deadline: Deadline) -> str | None:
    """Collective: the strongest reason any rank has to stop now (None: go on)."""
    from mpi4py import MPI

    return _AGREED_STOPS[comm.allreduce(_local_stop(stop, deadline), op=MPI.MAX)]


def _resolve_resume(config: RunConfig, original: RunConfig, comm) -> tuple[RunConfig, Checkpoint]:
    """Read the checkpoint: rank 0 its manifests, every rank the part holding its own chains
    (the latest checkpoint whose parts every rank finds intact, else the previous one); take
    seed and chains from it."""
    from mpi_pymc import checkpoint, seeding

    path = checkpoint.checkpoint_path(str(config.out))
    manifests, error = None, None
    if comm.Get_rank() == 0:
        try:
            manifests = checkpoint.candidates(path)
        except UserError as exc:
            error = exc
    agree(comm, error, "reading the checkpoint")
    manifests = comm.bcast(manifests, root=0)
    readable = [(where, meta) for where, meta in manifests if isinstance(meta, dict)]
    problems = [meta for _, meta in manifests if isinstance(meta, str)]
    if not readable:
        raise AgreedError(checkpoint.corrupted(path, problems))
    stored = readable[0][1]
    changes = {}
    if original.seed is None:
        changes["seed"] = int(stored["settings"]["seed"])
    if original.chains is None and original.chains_per_rank is None:
        changes["chains"] = int(stored["chains"])
    config = config.replace(**changes)
    if config.chains != int(stored["chains"]):
        raise AgreedError(
            f"--resume: the checkpoint has {stored['chains']} chains but {config.chains} were "
            "asked for: drop --chains/--chains-per-rank when resuming"
        )
    if config.chains < comm.Get_size():
        raise AgreedError(
            f"--resume: {comm.Get_size()} ranks but only {config.chains} chains: launch fewer ranks"
        )
    mine = seeding.chain_group(int(config.chains), comm.Get_size(), comm.Get_rank())

    def agreed(problem: str | None) -> str | None:
        return next((found for found in comm.allgather(problem) if found is not None), None)

    try:
        return config, checkpoint.first_intact(path, manifests, lambda meta: mine, agreed)
    except UserError as exc:  # every rank reached the same verdicts
        raise AgreedError(str(exc)) from None


@dataclass
class _Job:
    """What every phase of one run shares: communicator, settings, clocks and the stop flags."""

    comm: Any
    config: RunConfig
    echo: Callable[[str], None]
    launched_at: float = field(default_factory=time.time)
    t_start: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    stop: _StopRequest = field(default_factory=_StopRequest)
    lock: Any = None  # rank 0's hold on the output (output_lock.OutputLock)
    writer: Any = None  # the open output, once there is one

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def say(self, line: str) -> None:
        if self.rank == 0:
            self.echo(line)


@dataclass
class _Chains:
    """This rank's chains once the model is compiled: what sampling needs."""

    compiled: Any
    chain_group: range
    root_seed: int
    sampler: Any
    state: Any
    ckpt: Checkpoint | None
    compiling: Any = None  # _BackgroundCompile


@dataclass
class _Sampled:
    """Where the sampling loop left off."""

    draw: int
    iteration: int
    stopped_by: str | None
    draws_completed: np.ndarray
    divergences: int = 0
    goal_stats: dict | None = None  # the last --until-ess check's diagnostics, at `draw`
    goal_checks: list[int] = field(default_factory=list)  # draws checked by this process


def run(config: RunConfig, comm=None, echo=print, model=None, interrupt=False) -> RunResult:
    """Sample on every rank of ``comm``; rank 0 reports through ``echo``.

    The model is ``config.model_path`` (imported on every rank) or, from the Python API, the
    ``pm.Model`` passed as ``model`` (built on every rank, or unpickled by each). The phases
    run in order; each ends in an agreement, so a failure anywhere stops every rank there.
    ``interrupt``: Ctrl-C stops the run after its chunk with a checkpoint (the Python API).
    """
    from mpi4py import MPI

    job = _Job(comm if comm is not None else MPI.COMM_WORLD.Clone(), config, echo)
    job.stop.install(interrupt)
    try:
        return _run_phases(job, model)
    except AgreedError:
        if job.writer is not None:  # every rank raised it at the same point: close together
            job.writer.abandon()
        raise
    finally:
        release_output(job)
        if interrupt:
            job.stop.restore()


def _run_phases(job: _Job, model) -> RunResult:
    """The driver's phases, in order."""
    config = job.config
    guard_launcher(job.size)
    original = config
    job.config = settle_settings(job, model is not None)
    binding = bind_devices(job)
    check_output_path(job)
    ckpt = settle_seed(job, original)
    job.timings["startup"] = time.perf_counter() - job.t_start
    with job.timed("load_model"):
        model = load_the_model(job, model)
    with job.timed("compile"):
        compiled = compile_and_fingerprint(job, model)
    if ckpt is not None:
        check_resume_matches(ckpt, compiled.fingerprint, job.config.settings_for_fingerprint())
    node_data = share_data(job, binding.platform, compiled)
    job.say(start_line(job.config, job.size, resuming=ckpt is not None))
    with job.timed("init"):
        chains = init_chains(job, compiled, model, ckpt, binding.platform)
    with job.timed("jit"):
        compile_programs(job, chains)
    writer, io = open_output(job, chains, binding, node_data)
    deadline = Deadline.start(job.launched_at, job.config.max_time, job_end_time(job))
    saver = _CheckpointSaver(job.config, compiled, chains.root_seed, job.comm, chains.chain_group)
    progress = Progress(
        job.rank == 0
        and (job.config.progress if job.config.progress is not None else sys.stderr.isatty()),
        job.config.tune + job.config.draws,
    )
    with job.timed("warmup"):
        sampled = warm_up(job, chains, saver, progress, deadline)
    sampled = sample_in_chunks(job, chains, sampled, writer, saver, progress, deadline)
    progress.close()
    result = finish(job, chains, sampled, writer, io)
    # Every rank's phases (rank 0's are `timings`): how each phase scales with the ranks.
    mine = {**job.timings, "checkpoint_writes": saver.seconds}
    writer.set_attrs({"rank_timings": job.comm.allgather(mine)})
    writer.close()
    job.comm.Barrier()
    if node_data is not None:
        node_data.free()  # nothing reads the model's data any more
    if not result.resumable:
        saver.remove()
        add_groups(job, model)
    return result


def add_groups(job: _Job, model) -> None:
    """``--log-likelihood``/``--posterior-predictive``: the post-processing pass on the same
    ranks, over the complete file (the output lock is still held)."""
    from mpi_pymc.postprocessing import PostprocessConfig, postprocess

    config = job.config
    if not (config.log_likelihood or config.posterior_predictive):
        return
    postprocess(
        PostprocessConfig(
            out=str(config.out),
            log_likelihood=config.log_likelihood,
            posterior_predictive=config.posterior_predictive,
            gpus_per_rank=config.gpus_per_rank,
        ),
        comm=job.comm,
        echo=job.echo,
        model=model,
    )


def guard_launcher(size: int, environ=os.environ) -> None:
    """Refuse N one-rank worlds started by ``srun`` with an MPI that was not wired to it."""
    launched = environ.get("SLURM_STEP_NUM_TASKS")
    if size == 1 and launched and launched.isdigit() and int(launched) > 1:
        # srun --mpi=none/pmi2 with an MPI that wants PMIx: N independent one-rank "jobs" that
        # would all write the same file.
        raise AgreedError(
            f"srun started {launched} tasks but MPI sees a world of 1: the MPI library was not "
            "wired to srun — use `srun --mpi=pmix` (see `srun --mpi=list`) or mpirun"
        )


def settle_settings(job: _Job, model_given: bool) -> RunConfig:
    """Validate the settings: pure and identical on every rank, so no rank needs to talk."""
    return _on_every_rank(
        job.comm, "validating the settings", lambda: validate(job.config, job.size, model_given)
    )


def bind_devices(job: _Job):
    """Bind this rank's GPU(s) or CPU cores, then resolve ``--chain-method auto`` for them."""
    from mpi_pymc import topology

    binding = _on_every_rank(
        job.comm, "binding devices", lambda: topology.bind(job.comm, job.config.gpus_per_rank)
    )
    # Every rank of a job binds the same kind of device, so every rank resolves alike.
    job.config = resolve_chain_method(job.config, binding.platform)
    return binding


def check_output_path(job: _Job) -> None:
    """Rank 0 locks and checks the output path (one view of the file system); every rank hears
    it. The lock is held until the run ends (:func:`release_output`)."""
    job.lock = _on_every_rank(
        job.comm,
        "checking the output path",
        lambda: _claim_output(job.config) if job.rank == 0 else None,
    )
    if job.lock is not None and job.lock.broke:
        job.say(f"note: {job.lock.broke}")


def release_output(job: _Job) -> None:
    """The run is over, however it ended: the next job may take the output."""
    if job.lock is not None:
        job.lock.release()
        job.lock = None


def settle_seed(job: _Job, original: RunConfig) -> Checkpoint | None:
    """The root seed (the checkpoint's on --resume, else given, else drawn on rank 0)."""
    from mpi_pymc import seeding

    ckpt = None
    if job.config.resume:
        job.config, ckpt = _resolve_resume(job.config, original, job.comm)
        if ckpt.fallback:
            job.say(
                f"note: {ckpt.fallback}: resuming from the previous checkpoint "
                f"(draw {ckpt.draws_done} of every chain)"
            )
    root_seed = job.config.seed
    if root_seed is None:
        root_seed = job.comm.bcast(seeding.fresh_root_seed() if job.rank == 0 else None, root=0)
        job.say(f"root seed {root_seed} (pass --seed {root_seed} to repeat this run)")
    job.config = job.config.replace(seed=root_seed)
    return ckpt


def load_the_model(job: _Job, model=None):
    """Import the model file on every rank (user code runs here), or check the given model."""
    _configure_jax(job.config.precision)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    from mpi_pymc.model_loading import check_model, load_model

    if model is not None:
        _on_every_rank(job.comm, "checking the model", lambda: check_model(model, "the model"))
        return model
    # Any failure to load is agreed on, never left to hang the others.
    return _on_every_rank(
        job.comm,
        "loading the model",
        lambda: load_model(str(job.config.model_path), job.config.model_name),
        catch=(Exception,),
    )


def compile_and_fingerprint(job: _Job, model):
    """Translate the model to JAX on every rank; the ranks' fingerprints must agree."""
    from mpi_pymc.compile import compile_model
    from mpi_pymc.translation import TranslationError

    compiled = _on_every_rank(
        job.comm,
        "compiling the model",
        lambda: compile_model(model, job.config.precision),
        catch=(Exception,),
        reword=lambda exc: (
            str(exc)
            if isinstance(exc, TranslationError)
            else f"could not translate the model to JAX: {type(exc).__name__}: {exc}"
        ),
    )
    disagreement = fingerprint_disagreement(job.comm.allgather(compiled.fingerprint))
    if disagreement:
        raise AgreedError(disagreement)
    return compiled


def fingerprint_disagreement(fingerprints: list[str]) -> str | None:
    """The error for ranks that built different models, or None when all agree."""
    if len(set(fingerprints)) <= 1:
        return None
    groups: dict[str, list[int]] = {}
    for rank, fingerprint in enumerate(fingerprints):
        groups.setdefault(fingerprint, []).append(rank)
    described = "; ".join(f"ranks {v} -> {k[:12]}" for k, v in groups.items())
    return (
        f"ranks built different models ({described}): every rank must build the same model — "
        "seed any random data in the model file (e.g. np.random.default_rng(1234))"
    )


def check_resume_matches(ckpt: Checkpoint, fingerprint: str, settings: dict) -> None:
    """A resumed run must have the checkpointed run's model and draw-changing settings."""
    from mpi_pymc.checkpoint import settings_differences

    if ckpt.meta["fingerprint"] != fingerprint:
        raise AgreedError(
            "--resume: the model differs from the checkpointed run's (fingerprint "
            f"{ckpt.meta['fingerprint'][:12]} vs {fingerprint[:12]}): resume with "
            "the same model file, data and package versions, or start again with --overwrite"
        )
    differences = settings_differences(ckpt.meta["settings"], settings)
    if differences:
        raise AgreedError(
            "--resume: settings differ from the checkpointed run ("
            + "; ".join(differences)
            + "): repeat the original options"
        )


def share_data(job: _Job, platform: str, compiled):
    """CPU ranks of a node read one copy of the data (see node_data).

    ``MPI_PYMC_SHARE_DATA=0`` opts out.
    """
    if platform != "cpu" or os.environ.get("MPI_PYMC_SHARE_DATA", "1") == "0":
        return None
    from mpi_pymc.node_data import share_on_node

    node_data = share_on_node(job.comm, compiled.data)
    compiled.data = tuple(node_data.arrays)
    return node_data


def start_line(config: RunConfig, size: int, resuming: bool) -> str:
    """Rank 0's first line: what runs where, with which settings."""
    what = "resuming" if resuming else "sampling"
    return (
        f"mpi_pymc {__version__}: {what} {config.model_path or 'the model'} on {size} rank(s), "
        f"{config.chains} chains ({config.chain_method}, {config.sampler}, "
        f"{config.precision}), seed {config.seed}, {config.tune} tune + {config.draws} draws"
    )


def init_chains(
    job: _Job, compiled, model, ckpt: Checkpoint | None, platform: str = "cpu"
) -> _Chains:
    """Initial points and sampler states of this rank's chain group (or the checkpoint's)."""
    from mpi_pymc import seeding
    from mpi_pymc.sampling import ChainGroupSampler, initial_positions

    root_seed = int(job.config.seed or 0)
    chain_group = seeding.chain_group(int(job.config.chains or 0), job.size, job.rank)
    sampler = ChainGroupSampler(compiled, job.config)
    compiling = _BackgroundCompile(job, sampler, len(chain_group), background=platform != "cpu")
    starts = _on_every_rank(
        job.comm,
        "initialising the chains",
        lambda: initial_positions(compiled, model, root_seed, chain_group),
        catch=(ValueError,),
        reword=str,
    )
    if job.config.check_logp:
        check_translation(job, compiled, model, starts)
    state = sampler.init(seeding.sampler_keys(root_seed, chain_group), starts.positions)
    if ckpt is not None:
        state = _restore_state(state, ckpt, chain_group)
    return _Chains(compiled, chain_group, root_seed, sampler, state, ckpt, compiling)


def check_translation(job: _Job, compiled, model, starts) -> None:
    """Every rank compares the JAX log-density at the model's initial point and at up to
    ``JITTERED_POINTS`` of its chains' starting points with PyTensor's own, before any draw."""
    from mpi_pymc.translation import JITTERED_POINTS, check_log_density

    count = min(JITTERED_POINTS, len(starts.positions))
    points = np.vstack([compiled.initial_flat, starts.positions[:count]])
    values = np.concatenate([[starts.initial_logdensity], starts.logdensity[:count]])
    _on_every_rank(
        job.comm,
        "checking the translation",
        lambda: check_log_density(model, compiled, points, values),
    )


class _BackgroundCompile:
    """This rank's share of the warmup and sampling programs, compiled from the state's shapes.
    The first ranks compile one program each; every rank then loads them from the persistent
    cache instead of compiling them again.

    With ``background`` (a GPU rank: its host cores are otherwise idle while it starts) the
    compile runs in a thread while the chains' initial points and states are computed (XLA
    compiles without the GIL); otherwise when :meth:`join` is called. A CPU rank gains nothing
    from the thread: measured on this project's 2-core machine with one and two ranks (eight
    schools), the init compile and the thread's then shared the cores and the start-up took as
    long as one after the other."""

    def __init__(self, job: _Job, sampler, chains: int, background: bool):
        programs = sampler.program_names()
        self.mine = (
            programs[job.rank :: min(job.size, len(programs))] if job.rank < len(programs) else []
        )
        self.sampler, self.chains = sampler, chains
        self.error: BaseException | None = None
        self.thread = None
        if self.mine and background:
            abstract = sampler.abstract_state(chains)
            self.thread = threading.Thread(
                target=self._compile, args=(sampler, abstract), daemon=True, name="precompile"
            )
            self.thread.start()

    def _compile(self, sampler, abstract) -> None:
        try:
            sampler.precompile(abstract, self.mine, abstract=True)
        except BaseException as exc:  # noqa: BLE001  (re-raised by join, on the main thread)
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
        elif self.mine:
            self._compile(self.sampler, self.sampler.abstract_state(self.chains))
        if self.error is not None:
            raise self.error


def compile_programs(job: _Job, chains: _Chains) -> None:
    """Wait for this rank's programs (:class:`_BackgroundCompile`), then for every rank's."""
    if chains.compiling is not None:
        chains.compiling.join()
    job.comm.Barrier()


def job_end_time(job: _Job) -> float | None:
    """The SLURM job's end time as rank 0 reads it (None outside a job)."""
    return job.comm.bcast(slurm_end_time() if job.rank == 0 else None, root=0)


def open_output(job: _Job, chains: _Chains, binding, node_data):
    """Open the writer (parallel HDF5 or shards) with the run's root attributes."""
    from mpi_pymc import storage

    config, out = job.config, str(job.config.out)
    io = storage.choose_io(config.io)
    if io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            "--io mpio needs an MPI-enabled h5py (h5py.get_config().mpi is False): "
            "run `make parallel-hdf5` or use --io shards"
        )
    chain_count = int(config.chains or 0)
    layout = storage.layout_for(chains.compiled, chain_count, config.draws, config.chunk_draws)
    attrs = root_attrs(
        config,
        job.size,
        chains.compiled,
        bindings=job.comm.allgather(binding.as_dict()),
        shared_bytes=job.comm.allgather(node_data.shared_bytes if node_data else 0),
        job_end=job_end_time(job),
    )
    check_disk_space(job, layout, io, chains)
    if config.overwrite:
        _on_every_rank(
            job.comm,
            "preparing the output",
            lambda: _remove_previous(out) if job.rank == 0 else None,
            catch=(OSError,),
            reword=lambda exc: f"cannot remove existing '{out}': {exc}",
        )
    ckpt = chains.ckpt
    writer = storage.open_writer(
        io, out, job.comm, layout, chains.chain_group, attrs,
        resume=ckpt is not None, draw_start=ckpt.draws_done if ckpt is not None else 0,
    )  # fmt: skip
    if ckpt is not None:
        writer.mark_completed(np.full(chain_count, ckpt.draws_done, dtype=np.int64))
    job.writer = writer
    return writer, io


def check_disk_space(job: _Job, layout, io: str, chains: _Chains) -> None:
    """Refuse, before anything is written, a run whose output and checkpoints would not fit on
    their file system (every dataset is allocated up front, so its size is known)."""
    import jax

    from mpi_pymc import disk_space, storage
    from mpi_pymc.checkpoint import checkpoint_files, checkpoint_path

    config, out = job.config, str(job.config.out)
    leaves = jax.tree_util.tree_leaves(chains.state)
    local_bytes = sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in leaves)
    resume = chains.ckpt is not None
    state_bytes = job.comm.allreduce(local_bytes)
    output = storage.output_bytes(layout, io, job.size, resume=resume)
    checkpoint = disk_space.checkpoint_bytes(state_bytes, len(leaves), resume, job.size)
    freed = [out, str(storage.shard_dir(out)), *checkpoint_files(checkpoint_path(out))]
    freed = freed if config.overwrite else []
    _on_every_rank(
        job.comm,
        "checking free disk space",
        lambda: disk_space.check(out, output, checkpoint, freed) if job.rank == 0 else None,
    )


def root_attrs(
    config: RunConfig, size: int, compiled, bindings, shared_bytes, job_end
) -> dict[str, Any]:
    """The output file's root attributes: how, where and with what this run sampled."""
    from mpi_pymc import seeding

    chains = int(config.chains or 0)
    return {
        "inference_library": "mpi_pymc",
        "inference_library_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root_seed": str(config.seed),
        "ranks": size,
        "chains": chains,
        "draws": config.draws,
        "tune": config.tune,
        "chain_groups": [[g.start, g.stop] for g in seeding.chain_groups(chains, size)],
        "settings": config.settings_for_fingerprint(),
        "stopping": {
            "until_ess": config.until_ess,
            "until_tail_ess": config.tail_goal,
            "until_rhat": config.until_rhat,
            "max_time": config.max_time,
            "job_end_time": job_end,
        },
        "binding": bindings,
        "node_shared_data_bytes": shared_bytes,
        "versions": _versions(),
        "command_line": config.command_line or sys.argv,
        "model_path": os.path.abspath(config.model_path) if config.model_path else "",
        "model_fingerprint": compiled.fingerprint,
        "model_fingerprint_parts": compiled.fingerprint_parts,
    }


def warm_up(job: _Job, chains: _Chains, saver, progress: Progress, deadline: Deadline) -> _Sampled:
    """Warmup in chunks (checkpointed after each) or in one program, as the sampler needs."""
    from mpi4py import MPI

    config, sampler = job.config, chains.sampler

    # The least advanced chain of the job: every rank takes the same number of warmup chunks
    # (each ends in collectives) even when its chains ended warmup early.
    def least_iteration(state) -> int:
        return job.comm.allreduce(int(sampler.iterations(state).min()), op=MPI.MIN)

    draws_done = chains.ckpt.draws_done if chains.ckpt is not None else 0
    iteration = least_iteration(chains.state) if chains.ckpt is not None else 0
    stopped_by = None
    if iteration < config.tune and sampler.warmup_in_chunks:
        while iteration < config.tune and not stopped_by:
            t_chunk = time.time()
            n = min(config.chunk_draws, config.tune - iteration)
            chains.state = sampler.warmup(chains.state, n)
            iteration = least_iteration(chains.state)
            saver.save(chains.state, iteration, 0)
            progress.update("warmup  ", iteration, 0)
            deadline.record(time.time() - t_chunk)
            stopped_by = _agreed_stop(job.comm, job.stop, deadline)
    elif iteration < config.tune:
        chains.state = sampler.warmup(chains.state, config.tune)
        iteration = config.tune
        saver.save(chains.state, iteration, 0)
        progress.update("warmup  ", config.tune, 0)
        stopped_by = _agreed_stop(job.comm, job.stop, deadline)
    np.asarray(sampler.iterations(chains.state))  # wait for the device
    completed = np.full(int(config.chains or 0), draws_done, dtype=np.int64)
    return _Sampled(draws_done, iteration, stopped_by, completed)


def sample_in_chunks(
    job: _Job, chains: _Chains, sampled: _Sampled, writer, saver, progress, deadline
) -> _Sampled:
    """Draw, write and checkpoint chunk by chunk until the draws, a goal or a stop end it."""
    config, sampler, compiled = job.config, chains.sampler, chains.compiled
    t0 = time.perf_counter()
    io_seconds = goal_seconds = 0.0
    stat_names = [v.name for v in writer.layout.draw_groups["sample_stats"]]
    if sampled.draw and not sampled.stopped_by:
        # A resumed run checks where it resumes, as the first run did (or would have, had a
        # deadline not stopped it there first): the same chunks follow, and a goal already met
        # ends the run at the same draw.
        t_goal = time.perf_counter()
        _check_goal(job, chains, sampled, writer)
        goal_seconds += time.perf_counter() - t_goal
    while sampled.draw < config.draws and not sampled.stopped_by:
        t_chunk = time.time()
        n = min(config.chunk_draws, config.draws - sampled.draw)
        if config.until_ess is not None:
            n = next_chunk(
                sampled.draw, config.chunk_draws, config.draws - sampled.draw,
                sampled.goal_stats, config.until_ess, config.until_rhat, config.tail_goal,
            )  # fmt: skip
        chains.state, chunk_positions, stats = sampler.sample(chains.state, n)
        constrained = sampler.constrain(chunk_positions)
        values = {
            ("posterior", var.name): arr
            for var, arr in zip(compiled.posterior_vars, constrained, strict=True)
        }
        for name in stat_names:
            values[("sample_stats", name)] = np.asarray(stats[name])
        _injected_fault(job.rank, sampled.draw)
        t_io = time.perf_counter()
        kept = sampled.draw
        _agreed_write(job, "writing draws", partial(writer.write_chunk, sampled.draw, values), kept)
        sampled.draw += n
        saver.save(chains.state, config.tune + sampled.draw, sampled.draw)
        io_seconds += time.perf_counter() - t_io
        local = np.full(len(chains.chain_group), sampled.draw, dtype=np.int64)
        local_divergences = int(np.asarray(stats["diverging"]).sum())
        deadline.record(time.time() - t_chunk)
        gathered = job.comm.allgather((local, local_divergences, _local_stop(job.stop, deadline)))
        sampled.draws_completed = np.concatenate([g[0] for g in gathered])
        sampled.divergences += sum(g[1] for g in gathered)
        # A signal after the last chunk changes nothing: the run is complete.
        if sampled.draw < config.draws:
            sampled.stopped_by = _AGREED_STOPS[max(g[2] for g in gathered)]
        t_io = time.perf_counter()
        completed = partial(writer.mark_completed, sampled.draws_completed)
        _agreed_write(job, "writing draws", completed, kept)
        io_seconds += time.perf_counter() - t_io
        progress.update("sampling", config.tune + sampled.draw, sampled.divergences)
        if not sampled.stopped_by:
            t_goal = time.perf_counter()
            _check_goal(job, chains, sampled, writer)
            goal_seconds += time.perf_counter() - t_goal
    job.timings["sampling"] = time.perf_counter() - t0 - io_seconds - goal_seconds
    job.timings["io"] = io_seconds
    if config.until_ess is not None:
        job.timings["until_ess_checks"] = goal_seconds
    return sampled


def _check_goal(job: _Job, chains: _Chains, sampled: _Sampled, writer) -> None:
    """An ``--until-ess`` check at ``sampled.draw`` (once the goal is reachable at all): its
    diagnostics become ``sampled.goal_stats``, and a goal met before the cap stops the run."""
    config = job.config
    if config.until_ess is None or not goal_reachable(
        int(config.chains or 0) * sampled.draw, max(config.until_ess, config.tail_goal or 0)
    ):
        return
    sampled.goal_stats = _diagnostics_of(writer, chains, job.comm, sampled.draw)
    sampled.goal_checks.append(sampled.draw)
    if (
        goal_met(sampled.goal_stats, config.until_ess, config.until_rhat, config.tail_goal)
        and sampled.draw < config.draws
    ):
        sampled.stopped_by = STOP_GOAL


def _agreed_write(job: _Job, phase: str, write: Callable[[], None], draws_kept: int) -> None:
    """A write that may fail on some ranks (disk full, quota, I/O error), agreed at once: every
    rank stops here with one line, before a checkpoint could claim the lost draws."""
    _on_every_rank(
        job.comm,
        phase,
        write,
        catch=(OSError,),
        reword=lambda exc: f"{exc}; {_what_is_kept(job.config, draws_kept)}",
    )


def _what_is_kept(config: RunConfig, draws_kept: int | None = None) -> str:
    """After a failed write: what the user still has, and how to go on."""
    from mpi_pymc.checkpoint import checkpoint_path

    draws = "every flushed draw" if draws_kept is None else f"its first {draws_kept} draws"
    return (
        f"{config.out} keeps {draws} of every chain and "
        f"{checkpoint_path(str(config.out))} the last good checkpoint: free space or fix the file "
        "system, then continue with --resume"
    )


def finish(job: _Job, chains: _Chains, sampled: _Sampled, writer, io: str) -> RunResult:
    """Trim, diagnose and record the run; rank 0 prints the summary (or how to resume)."""
    config, draw = job.config, sampled.draw
    outcome = sampled.stopped_by or STOP_DRAWS
    summary = None
    if outcome == STOP_GOAL:
        writer.trim(draw)  # the file holds exactly the draws taken
    if config.until_ess is not None:
        writer.set_attrs({"until_ess_checks": np.asarray(sampled.goal_checks, dtype=np.int64)})
    if outcome in RESUMABLE_STOPS:
        writer.set_attrs({"timings": job.timings, "stopped_by": outcome})
        lines = [resume_line(config, outcome, draw, sampled.iteration)]
    else:
        writer.set_attrs({"peak_rss_mb": job.comm.allgather(_peak_rss_mb()), "stopped_by": outcome})
        with job.timed("diagnostics"):
            summary = _diagnose(writer, chains, job.comm, config, draw, sampled.goal_stats)
        job.timings["total"] = time.perf_counter() - job.t_start
        writer.set_attrs(
            {
                "timings": job.timings,
                "divergences": sampled.divergences,
                "diagnostics": summary["json"],
            }
        )
        lines = summary_lines(config, outcome, draw, summary, sampled.divergences, io, job.timings)
    for line in lines:
        job.say(line)
    return RunResult(
        out=str(config.out),
        root_seed=chains.root_seed,
        chains=int(config.chains or 0),
        draws_completed=sampled.draws_completed,
        timings=job.timings,
        summary=summary,
        stopped_by=outcome,
    )


def resume_line(config: RunConfig, outcome: str, draw: int, iteration: int) -> str:
    """What a run stopped early with a checkpoint tells its user."""
    return (
        f"stopped by {_STOP_WORDS[outcome]} after {draw} of {config.draws} draws (warmup "
        f"{min(iteration, config.tune)}/{config.tune}); checkpoint written. Continue "
        f"with the same command plus --resume (output {config.out})"
    )


def summary_lines(
    config: RunConfig, outcome: str, draw: int, summary: dict, divergences: int, io: str, timings
) -> list[str]:
    """The finished run's report: table, warnings, the goal's verdict, where the draws are."""
    lines = [summary["table"], *(f"warning: {line}" for line in summary["warnings"])]
    tail = config.tail_goal
    tail_part = (
        "" if tail == config.until_ess else ("no tail ESS, " if not tail else f"tail ESS {tail}, ")
    )
    goal = f"--until-ess {config.until_ess} ({tail_part}R-hat <= {config.until_rhat})"
    if outcome == STOP_GOAL:
        lines.append(
            f"reached {goal} after {draw} of at most {config.draws} draws per chain: "
            f"{goal_progress(summary['stats'])}"
        )
    elif config.until_ess is not None:
        lines.append(
            f"warning: {goal} not reached within --draws {config.draws}: "
            f"{goal_progress(summary['stats'])}; resume is not possible for a complete run, "
            "start a longer one"
        )
    lines.append(
        f"{divergences} divergences. Wrote {config.chains} chains x {draw} "
        f"draws to {config.out} ({io}); open with arviz.from_netcdf('{config.out}'). "
        f"Wall time {timings['total']:.1f}s"
    )
    return lines


_STOP_WORDS = {
    STOP_SIGNAL: "a signal",
    STOP_MAX_TIME: "--max-time",
    STOP_JOB_END: "the SLURM job's end time",
}


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _injected_fault(rank: int, draw: int) -> None:
    """Test hook: ``MPI_PYMC_INJECT_FAULT=RANK:DRAW`` raises on that rank from that draw on.

    Lets the test suite prove that an exception on one rank mid-sampling ends the whole job.
    """
    spec = os.environ.get("MPI_PYMC_INJECT_FAULT")
    if spec:
        fault_rank, fault_draw = (int(x) for x in spec.split(":"))
        if rank == fault_rank and draw >= fault_draw:
            raise RuntimeError(f"injected fault at draw {draw} (MPI_PYMC_INJECT_FAULT={spec})")


def _restore_state(fresh_state, ckpt, chain_group: range):
    """Replace a freshly initialised state by the checkpointed one for this rank's chains."""
    import jax
    import jax.numpy as jnp

    fresh, treedef = jax.tree_util.tree_flatten(fresh_state)
    if len(fresh) != len(ckpt.leaves):
        raise AgreedError(
            "--resume: the checkpoint does not match this sampler's state layout (written by "
            "another version of mpi_pymc): start the run again without --resume"
        )
    restored = []
    offset = chain_group.start - ckpt.chains.start
    for new, saved in zip(fresh, ckpt.leaves, strict=True):
        part = saved[offset : offset + len(chain_group)]
        if part.shape != tuple(new.shape) or part.dtype != new.dtype:
            raise AgreedError(
                f"--resume: checkpoint state {part.shape}/{part.dtype} does not fit "
                f"{tuple(new.shape)}/{new.dtype}: was it written by another version?"
            )
        restored.append(jnp.asarray(part))
    return jax.tree_util.tree_unflatten(treedef, restored)


class _CheckpointSaver:
    """After each chunk: every rank writes its chains' states, then rank 0 the manifest
    ``OUT.ckpt`` naming them (``checkpoint.py``)."""

    def __init__(self, config: RunConfig, compiled, root_seed: int, comm, chain_group: range):
        from mpi_pymc.checkpoint import checkpoint_path

        self.path = checkpoint_path(str(config.out))
        self.comm = comm
        self.config = config
        self.chain_group = chain_group
        # Names this run's parts apart from a resumed run's, whose parts stay until replaced.
        self.run_label = comm.bcast(os.urandom(4).hex() if comm.Get_rank() == 0 else None, 0)
        self.saves = 0
        self.seconds = 0.0  # spent in save(), part of the warmup and io phases
        self.meta = {
            "settings": config.settings_for_fingerprint(),
            "fingerprint": compiled.fingerprint,
            "root_seed": str(root_seed),
            "chains": config.chains,
            "sampler": config.sampler,
            "version": __version__,
        }

    def remove(self) -> None:
        """A finished run needs no checkpoint."""
        from mpi_pymc.checkpoint import remove_checkpoint

        if self.comm.Get_rank() == 0:
            remove_checkpoint(self.path)

    def save(self, state, iteration: int, draws_done: int) -> None:
        import jax

        from mpi_pymc.checkpoint import write_manifest, write_part
        from mpi_pymc.storage import write_failure

        t0 = time.perf_counter()
        self.saves += 1
        label = f"{self.run_label}-{self.saves:06d}"
        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]

        def failed(where: str, exc: OSError) -> UserError:
            return UserError(f"{write_failure(where, exc)}; {_what_is_kept(self.config)}")

        part, error = None, None
        try:
            part = write_part(self.path, label, self.chain_group, leaves)
        except OSError as exc:
            error = failed(self.path, exc)
        agree(self.comm, error, "writing the checkpoint")
        parts = self.comm.gather(part, root=0)
        if self.comm.Get_rank() == 0:
            meta = {**self.meta, "iteration": iteration, "draws_done": draws_done}
            try:
                write_manifest(self.path, meta, parts)
            except OSError as exc:
                error = failed(self.path, exc)
        agree(self.comm, error, "writing the checkpoint")
        self.seconds += time.perf_counter() - t0


def _diagnostics_of(writer, chains: _Chains, comm, draws: int) -> dict:
    """R-hat/ESS of the first ``draws`` draws of all chains, by collectives; each rank reads
    back only its own chains."""
    from mpi_pymc.diagnostics_mpi import distributed_diagnostics

    matrix = local_draws_matrix(writer, chains.compiled, chains.chain_group, draws)
    return distributed_diagnostics(matrix, comm)


def _diagnose(writer, chains: _Chains, comm, config, draws: int, known=None) -> dict:
    """The summary of a finished run; ``known`` is a last --until-ess check at ``draws``."""
    from mpi_pymc import diagnostics

    stats = known if known is not None else _diagnostics_of(writer, chains, comm, draws)
    names = [c[0] for c in _flat_names(chains.compiled)]
    table = diagnostics.summary_table(names, stats)
    warns = diagnostics.convergence_warnings(stats, config.chains, names)
    as_json = {
        "parameters": names,
        **{k: np.asarray(v).tolist() for k, v in stats.items() if isinstance(v, np.ndarray)},
    }
    return {"table": table, "warnings": warns, "json": as_json, "stats": stats, "names": names}


def local_draws_matrix(writer, compiled, chain_group: range, draws: int) -> np.ndarray:
    """This rank's chains' first ``draws`` draws as (chains, draws, parameters), read back
    through its writer."""
    pieces = []
    for var in compiled.posterior_vars:
        data = writer.read_local("posterior", var.name, draws)
        pieces.append(np.asarray(data, dtype=np.float64).reshape(data.shape[0], data.shape[1], -1))
    return np.concatenate(pieces, axis=2)
