"""The SPMD driver behind ``python -m mpi_pymc run``: thin glue over the pure parts.

Every rank runs :func:`run` with the same arguments. Ranks talk only at phase boundaries
(agreeing on errors, seed, fingerprints) and once per chunk (progress); never while sampling.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import numpy as np

from mpi_pymc import __version__
from mpi_pymc.checkpoint import Checkpoint
from mpi_pymc.config import RunConfig, UserError, resolve_chain_method, validate
from mpi_pymc.errors import AgreedError, agree
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
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        except OSError:
            pass  # an unwritable cache only costs compile time


def _remove_previous(out: str) -> None:
    """``--overwrite``: the old output, its shards and its checkpoint go."""
    from mpi_pymc import storage
    from mpi_pymc.checkpoint import checkpoint_path

    storage.remove_output(out)
    if os.path.exists(checkpoint_path(out)):
        os.remove(checkpoint_path(out))


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
    directory = os.path.dirname(os.path.abspath(out))
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


class _Progress:
    """A one-line progress bar on rank 0 (stderr), only on a terminal unless forced."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = max(total, 1)
        self.start = time.perf_counter()
        self.last_len = 0

    def update(self, label: str, done: int, divergences: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * done / self.total)
        line = (
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{rate:,.0f} it/s  ETA {eta:5.0f}s  divergences {divergences}"
        )
        sys.stderr.write(line.ljust(self.last_len))
        sys.stderr.flush()
        self.last_len = len(line)

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _StopRequest:
    """SIGTERM/SIGUSR1 (SLURM's walltime warning) ask every rank to stop after this chunk."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.received: str | None = None

    def install(self) -> None:
        import signal

        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                signal.signal(number, self._handle)

    def _handle(self, number, frame) -> None:
        import signal

        self.received = signal.Signals(number).name


def _local_stop(stop: _StopRequest, deadline: Deadline) -> int:
    """This rank's reason to stop after this chunk, as an index into ``_AGREED_STOPS``."""
    if stop.received:
        return _AGREED_STOPS.index(STOP_SIGNAL)
    return _AGREED_STOPS.index(deadline.reason_to_stop(time.time()))


def _agreed_stop(comm, stop: _StopRequest, deadline: Deadline) -> str | None:
    """Collective: the strongest reason any rank has to stop now (None: go on)."""
    from mpi4py import MPI

    return _AGREED_STOPS[comm.allreduce(_local_stop(stop, deadline), op=MPI.MAX)]


T = TypeVar("T")


def _on_every_rank(comm, phase: str, work: Callable[[], T], catch=(UserError,), reword=None) -> T:
    """Run ``work`` on this rank, then agree: if it failed anywhere, every rank raises.

    ``catch`` lists the exceptions that count as this phase's failures (anything else is a bug
    and aborts the job); ``reword`` turns one into the user's message.
    """
    result, error = None, None
    try:
        result = work()
    except catch as exc:
        error = UserError(reword(exc)) if reword else exc
    agree(comm, error, phase)
    return cast(T, result)


def _resolve_resume(config: RunConfig, original: RunConfig, comm) -> tuple[RunConfig, Checkpoint]:
    """Read the checkpoint (rank 0), take seed and chains from it, and share it."""
    from mpi_pymc.checkpoint import checkpoint_path, read_checkpoint

    ckpt, error = None, None
    if comm.Get_rank() == 0:
        try:
            ckpt = read_checkpoint(checkpoint_path(str(config.out)))
        except UserError as exc:
            error = exc
    agree(comm, error, "reading the checkpoint")
    ckpt = comm.bcast(ckpt, root=0)
    stored = ckpt.meta
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
    return config, ckpt


def run(config: RunConfig, comm=None, echo=print) -> RunResult:
    """Sample ``config.model_path`` on every rank of ``comm``; rank 0 reports."""
    t_start, launched_at = time.perf_counter(), time.time()
    from mpi4py import MPI

    comm = comm if comm is not None else MPI.COMM_WORLD.Clone()
    rank, size = comm.Get_rank(), comm.Get_size()
    timings: dict[str, float] = {}
    stop = _StopRequest()
    stop.install()

    launched = os.environ.get("SLURM_STEP_NUM_TASKS")
    if size == 1 and launched and launched.isdigit() and int(launched) > 1:
        # srun --mpi=none/pmi2 with an MPI that wants PMIx: N independent one-rank "jobs" that
        # would all write the same file.
        raise AgreedError(
            f"srun started {launched} tasks but MPI sees a world of 1: the MPI library was not "
            "wired to srun — use `srun --mpi=pmix` (see `srun --mpi=list`) or mpirun"
        )

    # Settings: pure, identical on every rank, so no communication is needed to agree.
    original = config
    config = _on_every_rank(comm, "validating the settings", lambda: validate(original, size))

    from mpi_pymc import seeding, topology

    binding = _on_every_rank(
        comm, "binding devices", lambda: topology.bind(comm, config.gpus_per_rank)
    )
    # Every rank of a job binds the same kind of device, so every rank resolves alike.
    config = resolve_chain_method(config, binding.platform)
    # Output checks on rank 0 only (one view of the file system), verdict shared.
    _on_every_rank(
        comm, "checking the output path", lambda: _check_output(config) if rank == 0 else None
    )

    ckpt = None
    if config.resume:
        config, ckpt = _resolve_resume(config, original, comm)
    root_seed = config.seed
    if root_seed is None:
        root_seed = comm.bcast(seeding.fresh_root_seed() if rank == 0 else None, root=0)
        if rank == 0:
            echo(f"root seed {root_seed} (pass --seed {root_seed} to repeat this run)")
    config = config.replace(seed=root_seed)
    # Resolved by validate() and the checkpoint: plain values from here on.
    chains, out = int(config.chains or 0), str(config.out)
    chain_group = seeding.chain_group(chains, size, rank)
    job_end = comm.bcast(slurm_end_time() if rank == 0 else None, root=0)
    deadline = Deadline.start(launched_at, config.max_time, job_end)
    timings["startup"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    _configure_jax(config.precision)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    from mpi_pymc.model_loading import load_model

    # Any failure to load (user code runs here) is agreed on, never left to hang the others.
    model = _on_every_rank(
        comm,
        "loading the model",
        lambda: load_model(config.model_path, config.model_name),
        catch=(Exception,),
    )
    timings["load_model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from mpi_pymc.compile import compile_model

    compiled = _on_every_rank(
        comm,
        "compiling the model",
        lambda: compile_model(model, config.precision),
        catch=(Exception,),
        reword=lambda exc: f"could not translate the model to JAX: {type(exc).__name__}: {exc}",
    )
    fingerprints = comm.allgather(compiled.fingerprint)
    if len(set(fingerprints)) > 1:
        groups: dict[str, list[int]] = {}
        for r, fp in enumerate(fingerprints):
            groups.setdefault(fp, []).append(r)
        described = "; ".join(f"ranks {v} -> {k[:12]}" for k, v in groups.items())
        raise AgreedError(
            f"ranks built different models ({described}): every rank must build the same model — "
            "seed any random data in the model file (e.g. np.random.default_rng(1234))"
        )
    timings["compile"] = time.perf_counter() - t0
    settings = config.settings_for_fingerprint()
    if ckpt is not None:
        from mpi_pymc.checkpoint import settings_differences

        if ckpt.meta["fingerprint"] != compiled.fingerprint:
            raise AgreedError(
                "--resume: the model differs from the checkpointed run's (fingerprint "
                f"{ckpt.meta['fingerprint'][:12]} vs {compiled.fingerprint[:12]}): resume with "
                "the same model file, data and package versions, or start again with --overwrite"
            )
        differences = settings_differences(ckpt.meta["settings"], settings)
        if differences:
            raise AgreedError(
                "--resume: settings differ from the checkpointed run ("
                + "; ".join(differences)
                + "): repeat the original options"
            )

    # CPU ranks of a node read one copy of the data (see node_data); MPI_PYMC_SHARE_DATA=0 opts out.
    node_data = None
    if binding.platform == "cpu" and os.environ.get("MPI_PYMC_SHARE_DATA", "1") != "0":
        from mpi_pymc.node_data import share_on_node

        node_data = share_on_node(comm, compiled.data)
        compiled.data = tuple(node_data.arrays)

    if rank == 0:
        what = "resuming" if ckpt is not None else "sampling"
        echo(
            f"mpi_pymc {__version__}: {what} {config.model_path} on {size} rank(s), "
            f"{chains} chains ({config.chain_method}, {config.sampler}, "
            f"{config.precision}), seed {root_seed}, {config.tune} tune + {config.draws} draws"
        )

    t0 = time.perf_counter()
    from mpi_pymc.sampling import ChainGroupSampler, initial_positions

    positions = _on_every_rank(
        comm,
        "initialising the chains",
        lambda: initial_positions(compiled, model, root_seed, chain_group),
        catch=(ValueError,),
        reword=str,
    )
    sampler = ChainGroupSampler(compiled, config)
    state = sampler.init(seeding.sampler_keys(root_seed, chain_group), positions)
    if ckpt is not None:
        state = _restore_state(state, ckpt, chain_group)
    timings["init"] = time.perf_counter() - t0

    # The first ranks compile the warmup and sampling programs side by side (one each); then
    # every rank loads them from the persistent cache instead of compiling them again.
    t0 = time.perf_counter()
    programs = sampler.program_names()
    mine = programs[rank :: min(size, len(programs))] if rank < len(programs) else []
    if mine:
        sampler.precompile(state, mine)
    comm.Barrier()
    timings["jit"] = time.perf_counter() - t0

    from mpi_pymc import storage

    io = storage.choose_io(config.io)
    if io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            "--io mpio needs an MPI-enabled h5py (h5py.get_config().mpi is False): "
            "run `make parallel-hdf5` or use --io shards"
        )
    layout = storage.layout_for(compiled, chains, config.draws, config.chunk_draws)
    bindings = comm.allgather(binding.as_dict())
    root_attrs = {
        "inference_library": "mpi_pymc",
        "inference_library_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root_seed": str(root_seed),
        "ranks": size,
        "chains": chains,
        "draws": config.draws,
        "tune": config.tune,
        "chain_groups": [[g.start, g.stop] for g in seeding.chain_groups(chains, size)],
        "settings": settings,
        "stopping": {
            "until_ess": config.until_ess,
            "until_rhat": config.until_rhat,
            "max_time": config.max_time,
            "job_end_time": job_end,
        },
        "binding": bindings,
        "node_shared_data_bytes": comm.allgather(node_data.shared_bytes if node_data else 0),
        "versions": _versions(),
        "command_line": config.command_line or sys.argv,
        "model_path": os.path.abspath(config.model_path),
        "model_fingerprint": compiled.fingerprint,
        "model_fingerprint_parts": compiled.fingerprint_parts,
    }
    if config.overwrite:
        _on_every_rank(
            comm,
            "preparing the output",
            lambda: _remove_previous(out) if rank == 0 else None,
            catch=(OSError,),
            reword=lambda exc: f"cannot remove existing '{out}': {exc}",
        )
    draws_done = ckpt.draws_done if ckpt is not None else 0
    writer = storage.open_writer(
        io, out, comm, layout, chain_group, root_attrs,
        resume=ckpt is not None, draw_start=draws_done,
    )  # fmt: skip
    draws_completed = np.full(chains, draws_done, dtype=np.int64)
    if ckpt is not None:
        writer.mark_completed(draws_completed)
    saver = _CheckpointSaver(config, compiled, root_seed, comm, chain_group)

    progress = _Progress(
        rank == 0 and (config.progress if config.progress is not None else sys.stderr.isatty()),
        config.tune + config.draws,
    )
    stopped_by: str | None = None
    t0 = time.perf_counter()

    # The least advanced chain of the job: every rank takes the same number of warmup chunks
    # (each ends in collectives) even when its chains ended warmup early.
    def least_iteration(state) -> int:
        return comm.allreduce(int(sampler.iterations(state).min()), op=MPI.MIN)

    iteration = least_iteration(state) if ckpt is not None else 0
    if iteration < config.tune:
        if sampler.backend.warmup_in_chunks:
            while iteration < config.tune and not stopped_by:
                t_chunk = time.time()
                n = min(config.chunk_draws, config.tune - iteration)
                state = sampler.warmup(state, n)
                iteration = least_iteration(state)
                saver.save(state, iteration, 0)
                progress.update("warmup  ", iteration, 0)
                deadline.record(time.time() - t_chunk)
                stopped_by = _agreed_stop(comm, stop, deadline)
        else:
            state = sampler.warmup(state, config.tune)
            iteration = config.tune
            saver.save(state, iteration, 0)
            progress.update("warmup  ", config.tune, 0)
            stopped_by = _agreed_stop(comm, stop, deadline)
    np.asarray(sampler.iterations(state))  # wait for the device
    timings["warmup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    io_seconds = goal_seconds = 0.0
    divergences_total = 0
    draw = draws_done
    goal_stats = None  # the last --until-ess check's diagnostics, at `draw` draws
    stat_names = [v.name for v in layout.draw_groups["sample_stats"]]
    while draw < config.draws and not stopped_by:
        t_chunk = time.time()
        n = min(config.chunk_draws, config.draws - draw)
        state, chunk_positions, stats = sampler.sample(state, n)
        constrained = sampler.constrain(chunk_positions)
        values = {
            ("posterior", var.name): arr
            for var, arr in zip(compiled.posterior_vars, constrained, strict=True)
        }
        for name in stat_names:
            values[("sample_stats", name)] = np.asarray(stats[name])
        _injected_fault(rank, draw)
        t_io = time.perf_counter()
        writer.write_chunk(draw, values)
        draw += n
        saver.save(state, config.tune + draw, draw)
        io_seconds += time.perf_counter() - t_io
        local = np.full(len(chain_group), draw, dtype=np.int64)
        local_divergences = int(np.asarray(stats["diverging"]).sum())
        deadline.record(time.time() - t_chunk)
        gathered = comm.allgather((local, local_divergences, _local_stop(stop, deadline)))
        draws_completed = np.concatenate([g[0] for g in gathered])
        divergences_total += sum(g[1] for g in gathered)
        # A signal after the last chunk changes nothing: the run is complete.
        if draw < config.draws:
            stopped_by = _AGREED_STOPS[max(g[2] for g in gathered)]
        t_io = time.perf_counter()
        writer.mark_completed(draws_completed)
        io_seconds += time.perf_counter() - t_io
        progress.update("sampling", config.tune + draw, divergences_total)
        if (
            config.until_ess is not None
            and not stopped_by
            and goal_reachable(chains * draw, config.until_ess)
        ):
            t_goal = time.perf_counter()
            goal_stats = _diagnostics_of(writer, compiled, chain_group, comm, draw)
            goal_seconds += time.perf_counter() - t_goal
            if goal_met(goal_stats, config.until_ess, config.until_rhat) and draw < config.draws:
                stopped_by = STOP_GOAL
    progress.close()
    timings["sampling"] = time.perf_counter() - t0 - io_seconds - goal_seconds
    timings["io"] = io_seconds
    if config.until_ess is not None:
        timings["until_ess_checks"] = goal_seconds
    outcome = stopped_by or STOP_DRAWS
    resumable = outcome in RESUMABLE_STOPS
    if outcome == STOP_GOAL:
        writer.trim(draw)  # the file holds exactly the draws taken

    summary, lines = None, []
    if resumable:
        writer.set_attrs({"timings": timings, "stopped_by": outcome})
        lines.append(
            f"stopped by {_STOP_WORDS[outcome]} after {draw} of {config.draws} draws (warmup "
            f"{min(iteration, config.tune)}/{config.tune}); checkpoint written. Continue "
            f"with the same command plus --resume (output {out})"
        )
    else:
        writer.set_attrs({"peak_rss_mb": comm.allgather(_peak_rss_mb()), "stopped_by": outcome})
        t0 = time.perf_counter()
        summary = _diagnose(writer, compiled, chain_group, comm, config, draw, goal_stats)
        timings["diagnostics"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        writer.set_attrs(
            {"timings": timings, "divergences": divergences_total, "diagnostics": summary["json"]}
        )
        lines += [summary["table"], *(f"warning: {line}" for line in summary["warnings"])]
        if outcome == STOP_GOAL:
            lines.append(
                f"reached --until-ess {config.until_ess} (R-hat <= {config.until_rhat}) after "
                f"{draw} of at most {config.draws} draws per chain: "
                f"{goal_progress(summary['stats'])}"
            )
        elif config.until_ess is not None:
            lines.append(
                f"warning: --until-ess {config.until_ess} not reached within --draws "
                f"{config.draws}: {goal_progress(summary['stats'])}; resume is not possible "
                "for a complete run, start a longer one"
            )
        lines.append(
            f"{divergences_total} divergences. Wrote {chains} chains x {draw} "
            f"draws to {out} ({io}); open with arviz.from_netcdf('{out}'). "
            f"Wall time {timings['total']:.1f}s"
        )
    writer.close()
    comm.Barrier()
    if node_data is not None:
        node_data.free()  # nothing reads the model's data any more
    if not resumable:
        saver.remove()
    if rank == 0:
        for line in lines:
            echo(line)
    # The handlers stay installed: a walltime signal arriving during teardown must not kill a
    # finished rank (exit 138 would mark a complete job FAILED).
    return RunResult(
        out=out,
        root_seed=root_seed,
        chains=chains,
        draws_completed=draws_completed,
        timings=timings,
        summary=summary,
        stopped_by=outcome,
    )


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
        raise AgreedError("--resume: the checkpoint does not match this sampler's state layout")
    restored = []
    for new, saved in zip(fresh, ckpt.leaves, strict=True):
        part = saved[chain_group.start : chain_group.stop]
        if part.shape != tuple(new.shape) or part.dtype != new.dtype:
            raise AgreedError(
                f"--resume: checkpoint state {part.shape}/{part.dtype} does not fit "
                f"{tuple(new.shape)}/{new.dtype}: was it written by another version?"
            )
        restored.append(jnp.asarray(part))
    return jax.tree_util.tree_unflatten(treedef, restored)


class _CheckpointSaver:
    """After each chunk: gather the chain states to rank 0, which writes ``OUT.ckpt``."""

    def __init__(self, config: RunConfig, compiled, root_seed: int, comm, chain_group: range):
        from mpi_pymc.checkpoint import checkpoint_path

        self.path = checkpoint_path(str(config.out))
        self.comm = comm
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
        if self.comm.Get_rank() == 0 and os.path.exists(self.path):
            os.remove(self.path)

    def save(self, state, iteration: int, draws_done: int) -> None:
        import jax

        from mpi_pymc.checkpoint import write_checkpoint

        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]
        gathered = self.comm.gather(leaves, root=0)
        error = None
        if self.comm.Get_rank() == 0:
            merged = [np.concatenate(parts) for parts in zip(*gathered, strict=True)]
            meta = {**self.meta, "iteration": iteration, "draws_done": draws_done}
            try:
                write_checkpoint(self.path, merged, meta)
            except OSError as exc:
                error = exc
        agree(self.comm, error, "writing the checkpoint")


def _diagnostics_of(writer, compiled, chain_group, comm, draws: int) -> dict:
    """R-hat/ESS of the first ``draws`` draws of all chains, by collectives; each rank reads
    back only its own chains."""
    from mpi_pymc.diagnostics_mpi import distributed_diagnostics

    return distributed_diagnostics(local_draws_matrix(writer, compiled, chain_group, draws), comm)


def _diagnose(writer, compiled, chain_group, comm, config, draws: int, known=None) -> dict:
    """The summary of a finished run; ``known`` is a last --until-ess check at ``draws``."""
    from mpi_pymc import diagnostics

    stats = (
        known if known is not None else _diagnostics_of(writer, compiled, chain_group, comm, draws)
    )
    names = [c[0] for c in _flat_names(compiled)]
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
