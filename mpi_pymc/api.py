"""The Python API: :func:`sample`, modelled on ``pm.sample``, over the same driver as the CLI.

Two ways to run, one code path (:func:`mpi_pymc.driver.run`):

* **SPMD** — ``mpirun -n 8 python fit.py`` where ``fit.py`` builds the model and calls
  ``sample()`` on every rank (the model-file contract: every rank builds the same model), or a
  plain ``python fit.py``, which is one rank.
* **Launch** — ``sample(model, ranks=4)`` from one process with no MPI job around it (a
  notebook, a script): the model is pickled next to the output, ``mpirun`` (or ``srun`` inside
  a SLURM allocation) starts ``python -m mpi_pymc run OUT.launch/model.pkl`` with the same
  options, progress is relayed, and the result is read back from the file.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mpi_pymc.core.config import DEFAULT_UNTIL_RHAT, RunConfig, UserError, parse_duration
from mpi_pymc.core.errors import EXIT_CHECKPOINTED, EXIT_OK, EXIT_USER
from mpi_pymc.core.mpi_env import names_a_rank, under_mpi_launcher

# Where sample() writes when no ``out`` is given (a new file per call, never an old one).
DEFAULT_RUNS_DIR = "mpi_pymc_runs"
_ERROR_PREFIX = "mpi_pymc: error: "


class RankFailure(RuntimeError):
    """A rank failed unexpectedly; the message is that rank's one line (``rN host | ...``)."""


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted and left a checkpoint; the message says how to continue."""


def sample(
    model=None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int | None = None,
    random_seed: int | None = None,
    target_accept: float = 0.8,
    progressbar: bool = True,
    *,
    ranks: int | None = None,
    launcher: str = "auto",
    comm=None,
    **options,
):
    """Sample a PyMC model on MPI ranks and return the ArviZ object read from the output file.

    ``model`` is a ``pm.Model``, a model file ``"model.py[:NAME]"``, or None for the model of
    the enclosing ``with model:`` block. ``draws`` ... ``progressbar`` mean what they mean in
    ``pm.sample``; ``options`` are the CLI's (``python -m mpi_pymc run --help``) with the same
    names and defaults: ``chains_per_rank``, ``sampler``, ``chain_method``, ``precision``,
    ``max_tree_depth``, ``metric``, ``adapt_group``, ``data_shards``, ``data_row_dim``,
    ``gpus_per_rank``, ``chunk_draws``, ``io``, ``pack``, ``out``, ``overwrite``, ``resume``,
    ``until_ess``, ``until_tail_ess``, ``until_rhat``,
    ``max_time`` (seconds or ``"HH:MM:SS"``), ``check_logp``, ``log_likelihood``,
    ``posterior_predictive`` (the groups added when the draws are complete, as
    :func:`postprocess` adds them), ``summary``.

    On screen it behaves like ``pm.sample``: the start-up phases and the progress bar, then
    PyMC's divergence, R-hat and ESS warnings and one closing line naming the file. The
    per-parameter table is :func:`summary` (``summary="table"`` prints it as the CLI does).

    ``out``: the HDF5 file; by default a new file under ``./mpi_pymc_runs/`` for every call.
    ``ranks``: from a single process, launch this many ranks (``launcher``: ``auto``,
    ``mpirun`` or ``srun``) and wait for them; without it the call runs on the ranks of the
    MPI job it is part of (``comm``, default ``COMM_WORLD``), or as one rank.

    Returns ``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x), loaded in
    memory; its ``attrs`` hold the run's facts (``root_seed``, ``timings``, ``stopped_by``,
    ``draws_completed``, ``path``...). Mistakes raise :class:`mpi_pymc.UserError` with the
    CLI's one line; a failing rank raises :class:`RankFailure`; an interrupt (Ctrl-C, the
    notebook's stop button) stops every rank after its current chunk with a checkpoint and
    raises :class:`RunInterrupted`: call again with ``out=`` that file and ``resume=True``.
    """
    options.setdefault("summary", "warnings")
    model, config = settings(
        model, draws, tune, chains, random_seed, target_accept, progressbar, **options
    )
    if ranks is not None:
        if ranks < 1:
            raise UserError(f"ranks must be a positive integer, got {ranks}")
        if under_mpi_launcher():
            raise UserError(
                "ranks= launches its own MPI job, but this process already is a rank of one: "
                "drop ranks= (every rank of the job calls sample()) or run without mpirun"
            )
        from mpi_pymc.core.config import validate

        validate(config, ranks, model is not None)  # mistakes fail here, before any rank starts
        return launch(config, model, ranks, launcher)
    return _sample_here(config, model, comm)


def settings(
    model=None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int | None = None,
    random_seed: int | None = None,
    target_accept: float = 0.8,
    progressbar: bool = True,
    *,
    chains_per_rank: int | None = None,
    sampler: str = "nuts",
    chain_method: str = "auto",
    precision: str = "float64",
    max_tree_depth: int = 10,
    metric: str = "auto",
    adapt_group: int = 1,
    data_shards: int = 1,
    data_row_dim: str | None = None,
    gpus_per_rank: int | None = None,
    chunk_draws: int = 100,
    io: str = "auto",
    pack: bool = True,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    until_ess: int | None = None,
    until_tail_ess: int | None = None,
    until_rhat: float = DEFAULT_UNTIL_RHAT,
    max_time: float | str | None = None,
    check_logp: bool = True,
    log_likelihood: bool = False,
    posterior_predictive: bool = False,
    summary: str = "table",
) -> tuple[Any, RunConfig]:
    """``sample()``'s arguments as (model object or None, RunConfig) — shared with submit()."""
    model, model_path, model_name = _resolve_model(model)
    config = RunConfig(
        model_path=model_path,
        model_name=model_name,
        draws=draws,
        tune=tune,
        chains=chains,
        chains_per_rank=chains_per_rank,
        seed=_seed(random_seed),
        out=None if out is None else os.fspath(out),
        sampler=sampler,
        chain_method=chain_method,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        metric=metric,
        adapt_group=adapt_group,
        data_shards=data_shards,
        data_row_dim=data_row_dim,
        precision=precision,
        gpus_per_rank=gpus_per_rank,
        chunk_draws=chunk_draws,
        progress=progressbar,
        io=io,
        pack=pack,
        overwrite=overwrite,
        resume=resume,
        until_ess=until_ess,
        until_tail_ess=until_tail_ess,
        until_rhat=until_rhat,
        max_time=_seconds(max_time),
        check_logp=check_logp,
        log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive,
        summary=summary,
        model_label=None if model is None else model_label(model),
        command_line=[sys.executable, *sys.argv],
    )
    if resume and config.out is None:
        raise UserError("resume=True needs out= naming the interrupted run's file")
    return model, config


def run_options(config: RunConfig) -> dict[str, Any]:
    """The settings that differ from the CLI's defaults, as ``run`` option dests -> values."""
    defaults = RunConfig()
    skip = {"model_path", "model_name", "command_line"}
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(RunConfig)
        if f.name not in skip and getattr(config, f.name) != getattr(defaults, f.name)
    }


def pickle_model(model, path: Path) -> None:
    """Write ``model`` with cloudpickle for ranks to load (``run MODEL.pkl``)."""
    import cloudpickle

    try:
        blob = cloudpickle.dumps(model)
    except Exception as exc:
        raise UserError(
            f"the model cannot be pickled for the ranks ({type(exc).__name__}: {exc}): build it "
            "only from data and functions that pickle, or put it in a model file and pass "
            "'model.py' instead"
        ) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    except OSError as exc:
        raise UserError(f"cannot write '{path}': {exc}") from None


def _resolve_model(model) -> tuple[Any, str | None, str | None]:
    """(model object, model file, attribute) from what the caller passed."""
    if isinstance(model, str | os.PathLike):
        from mpi_pymc.core.config import parse_model_spec

        path, name = parse_model_spec(os.fspath(model))
        return None, path, name
    if model is None:
        import pymc as pm

        try:
            model = pm.modelcontext(None)
        except TypeError:
            raise UserError(
                "no model given: call sample() inside `with model:` or pass model="
            ) from None
    return model, None, None


def model_label(model, most: int = 6) -> str:
    """How the start line names a ``pm.Model`` object: its name, else its free variables (as
    ``pm.sample`` lists them), never the pickle the ranks load it from."""
    name = getattr(model, "name", "")
    if name:
        return f"model '{name}'"
    free = [rv.name for rv in getattr(model, "free_RVs", [])]
    if not free:
        return "the model"
    listed = ", ".join(free[:most]) + (f" and {len(free) - most} more" if len(free) > most else "")
    return f"the model [{listed}]"


def _seed(random_seed) -> int | None:
    if random_seed is None:
        return None
    if isinstance(random_seed, bool) or not isinstance(random_seed, int):
        raise UserError(
            f"random_seed must be a non-negative integer or None, got {random_seed!r}: "
            "chain seeds are spawned from one root seed"
        )
    return random_seed


def _seconds(max_time: float | str | None) -> float | None:
    if max_time is None or isinstance(max_time, int | float):
        return max_time
    return parse_duration(str(max_time))


def default_out(model, runs_dir: str = DEFAULT_RUNS_DIR, now: float | None = None) -> str:
    """A new output path for a call without ``out``: ``RUNS_DIR/NAME-YYYYmmdd-HHMMSS[-k].h5``.

    NAME is the model's name, or for a model file ``"path/fit.py[:NAME]"`` the file's stem."""
    if isinstance(model, str | os.PathLike):
        name = Path(str(model).split(":", 1)[0]).stem
    else:
        name = getattr(model, "name", "")
    name = (name or "model").replace(os.sep, "_")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    os.makedirs(runs_dir, exist_ok=True)
    candidate, k = os.path.join(runs_dir, f"{name}-{stamp}.h5"), 1
    while os.path.lexists(candidate) or os.path.lexists(candidate + ".launch"):
        k += 1
        candidate = os.path.join(runs_dir, f"{name}-{stamp}-{k}.h5")
    return candidate


def _sample_here(config: RunConfig, model, comm):
    """SPMD: this process is one rank of the job (or the only one)."""
    from mpi4py import MPI

    from mpi_pymc.core.errors import agree
    from mpi_pymc.driver import run
    from mpi_pymc.sampling.stopping import STOP_SIGNAL

    comm = comm if comm is not None else MPI.COMM_WORLD
    if config.out is None:
        chosen, error = None, None
        if comm.Get_rank() == 0:
            try:
                chosen = default_out(model if model is not None else config.model_path)
            except OSError as exc:
                error = UserError(f"cannot create '{DEFAULT_RUNS_DIR}/': {exc}: pass out=")
        agree(comm, error, "choosing the output file")
        config = config.replace(out=comm.bcast(chosen, root=0))
    if comm.Get_rank() != 0:
        config = config.replace(progress=False)
    result = _as_one_rank(comm, lambda: run(config, comm, model=model, interrupt=True))
    if result.stopped_by == STOP_SIGNAL:
        raise RunInterrupted(_interrupted_message(result.out))
    comm.Barrier()
    return open_result(result.out)


def _as_one_rank(comm, work):
    """``work()`` on this rank of the job: agreed failures and a lone process's raise here;
    anything this rank alone knows ends every rank (the others may wait in a collective)."""
    from mpi_pymc.core.errors import AgreedError, abort

    try:
        return work()
    except Exception as exc:
        if not isinstance(exc, AgreedError) and comm.Get_size() > 1:
            abort(comm, exc)
        raise


def postprocess(
    path: str,
    model=None,
    log_likelihood: bool = True,
    posterior_predictive: bool = False,
    var_names: list[str] | None = None,
    thin: int = 1,
    *,
    precision: str | None = None,
    memory_budget: str = "1G",
    block_draws: int | None = None,
    overwrite_groups: bool = False,
    comm=None,
):
    """Add ``log_likelihood`` / ``posterior_predictive`` groups to the finished run ``path``
    and return its ArviZ object, like :func:`sample`.

    The same pass as ``python -m mpi_pymc postprocess`` (options with the same names): called
    on every rank of an MPI job (``comm``, default ``COMM_WORLD``) each rank computes its own
    chains; in a plain process it is one rank. ``model``: the sampled ``pm.Model``, its file
    ``"model.py[:NAME]"``, or None for the enclosing ``with model:`` block.
    """
    from mpi4py import MPI

    from mpi_pymc.postprocessing.run import postprocess as run_pass
    from mpi_pymc.postprocessing.settings import PostprocessConfig, parse_size

    model, model_path, model_name = _resolve_model(model)
    config = PostprocessConfig(
        out=os.fspath(path),
        model_path=model_path,
        model_name=model_name,
        log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive,
        var_names=tuple(var_names or ()),
        thin=thin,
        precision=precision,
        block_draws=block_draws,
        memory_budget=parse_size(memory_budget),
        overwrite_groups=overwrite_groups,
    )
    comm = comm if comm is not None else MPI.COMM_WORLD
    _as_one_rank(comm, lambda: run_pass(config, comm, model=model))
    comm.Barrier()
    return open_result(config.out)


def _interrupted_message(out: str) -> str:
    return (
        f"interrupted: every rank stopped after its chunk and wrote a checkpoint; continue with "
        f"sample(..., out={out!r}, resume=True)"
    )


def summary(result, echo=print) -> str:
    """Print and return the per-parameter table of ``result`` (what :func:`sample` returns, or
    the path of a run's file), worst R-hat first, then the CLI's convergence warnings: what
    ``python -m mpi_pymc summary OUT`` prints. ``sample()`` leaves it out, as ``pm.sample``
    leaves it to ``az.summary``."""
    from mpi_pymc.report import result_summary

    if isinstance(result, str | os.PathLike):
        result = open_result(os.fspath(result))
    return result_summary(result, echo=echo)


def open_result(path: str):
    """The run's ArviZ object, loaded in memory (the file is closed), with its facts in attrs.
    A shards output whose shards are missing raises :class:`~mpi_pymc.output.packing.
    MissingShards` naming them (ArviZ alone would read those draws as NaN)."""
    import arviz as az

    from mpi_pymc.output.packing import check_shards

    check_shards(path)

    # Not hasattr(az, "InferenceData"): on ArviZ 1.x that lookup itself warns (MigrationWarning).
    if az.__version__.split(".")[0] == "0":  # ArviZ 0.x
        result = az.from_netcdf(path)
        result.load()
    else:  # ArviZ 1.x: a DataTree
        import xarray as xr

        with xr.open_datatree(path, engine="h5netcdf") as tree:
            result = tree.load().copy()
    result.attrs["path"] = os.path.abspath(path)
    return result


# --- launching the ranks from one process ------------------------------------------------


def launch(config: RunConfig, model, ranks: int, launcher: str = "auto"):
    """Start ``ranks`` ranks of ``python -m mpi_pymc run``, relay their progress, read the
    result. A model object goes to the ranks pickled beside the output (``OUT.launch/``)."""
    from mpi_pymc.core.mpi_env import local_mpi_env
    from mpi_pymc.driver.progress import RECORDS_ENV
    from mpi_pymc.jobscript import run_option_words

    out = config.out or default_out(model if model is not None else config.model_path)
    config = config.replace(out=out)
    workdir = Path(out + ".launch")
    spec = f"{config.model_path}:{config.model_name}" if config.model_name else config.model_path
    if model is not None:
        spec = str(workdir / "model.pkl")
        pickle_model(model, Path(spec))
    command = launch_command(ranks, ["run", str(spec), *run_option_words(run_options(config))])
    env = {k: v for k, v in local_mpi_env().items() if not names_a_rank(k)}
    env[RECORDS_ENV] = "records"
    try:
        code, interrupted, errors = _relay(command, env, config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if code == EXIT_CHECKPOINTED and interrupted:
        raise RunInterrupted(_interrupted_message(out))
    if code == EXIT_USER:
        raise UserError(errors[-1] if errors else f"the ranks exited with {code}")
    if code not in (EXIT_OK, EXIT_CHECKPOINTED):
        raise RankFailure(errors[-1] if errors else f"the ranks exited with {code}")
    return open_result(out)


def launch_command(ranks: int, args: list[str], launcher: str = "auto") -> list[str]:
    """``mpirun -n N python -m mpi_pymc ARGS`` (``srun`` inside a SLURM allocation)."""
    from mpi_pymc.core.mpi_env import mpirun_command

    if launcher == "auto":
        inside = "SLURM_JOB_ID" in os.environ and shutil.which("srun") is not None
        launcher = "srun" if inside else "mpirun"
    argv = ["-m", "mpi_pymc", *args]
    if launcher == "srun":
        return ["srun", "-n", str(ranks), "--mpi=pmix", sys.executable, *argv]
    if launcher == "mpirun":
        try:
            return mpirun_command(ranks, argv)
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    raise UserError(f"unknown launcher '{launcher}': choose auto, mpirun or srun")


def _relay(command: list[str], env: dict, config: RunConfig):
    """Run the ranks; show their progress and lines; on an interrupt ask them to stop.

    Returns (exit code, whether we interrupted, the error lines the ranks printed).
    """
    lines: queue.Queue = queue.Queue()
    # A session of its own: the terminal's or notebook's SIGINT reaches this process only,
    # which then asks the ranks to stop cleanly (SIGUSR1, forwarded by mpirun and srun).
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    readers = [
        threading.Thread(target=_pump, args=(stream, name, lines), daemon=True)
        for stream, name in ((process.stdout, "out"), (process.stderr, "err"))
    ]
    for reader in readers:
        reader.start()
    bar = _Bar(config.progress is not False, config.tune + config.draws)
    errors: list[str] = []
    interrupted = False
    open_streams = len(readers)
    while open_streams:
        try:
            name, line = lines.get(timeout=0.2)
        except queue.Empty:
            bar.tick()  # the elapsed time moves while a phase (a compile) takes its time
            continue
        except KeyboardInterrupt:
            if interrupted:  # a second interrupt: stop now, without a checkpoint
                process.kill()
                raise
            interrupted = True
            process.send_signal(signal.SIGUSR1)
            bar.print(
                "mpi_pymc: stopping every rank after its current chunk (interrupt again to "
                "kill them without a checkpoint)",
                sys.stderr,
            )
            continue
        if line is None:
            open_streams -= 1
            continue
        _show(name, line, bar, errors)
    bar.close()
    return process.wait(), interrupted, errors


def _pump(stream, name: str, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((name, line.rstrip("\n")))
    lines.put((name, None))


def _show(name: str, line: str, bar, errors: list[str]) -> None:
    from mpi_pymc.driver.progress import progress_record

    record = progress_record(line) if name == "out" else None
    if record is not None:
        bar.update(record)
        return
    if line.startswith(_ERROR_PREFIX):
        errors.append(line[len(_ERROR_PREFIX) :])
    elif " | error: " in line:  # a rank's unexpected failure: "rN host | error: ..."
        errors.append(line)
    bar.print(line, sys.stderr if name == "err" else sys.stdout)


class _Bar:
    """The launching process's view of rank 0's progress (tqdm: a widget under Jupyter), from
    the launch on: the start-up phases by name (tqdm's clock gives their elapsed time), then
    warmup and sampling."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            from mpi_pymc.driver.progress import STARTING

            self.bar = tqdm(total=total, unit="it", desc=STARTING)

    def update(self, record: dict) -> None:
        if self.bar is None:
            return
        self.bar.set_description(str(record.get("phase", "")), refresh=False)
        self.bar.set_postfix(divergences=record.get("divergences", 0), refresh=False)
        # update(), not n=: tqdm's smoothed rate then follows the draws, not the start-up time
        self.bar.update(max(int(record.get("done", 0)) - self.bar.n, 0))
        self.bar.refresh()

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.refresh()

    def print(self, line: str, stream) -> None:
        """A rank's line, above the bar rather than through it."""
        if self.bar is None:
            print(line, file=stream, flush=True)
        else:
            self.bar.write(line, file=stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
