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
from dataclasses import dataclass, field

import numpy as np

from mpi_pymc import __version__
from mpi_pymc.config import RunConfig, UserError, validate
from mpi_pymc.errors import AgreedError, agree


@dataclass
class RunResult:
    out: str
    root_seed: int
    chains: int
    draws_completed: np.ndarray
    timings: dict = field(default_factory=dict)
    summary: dict | None = None
    stopped_by_signal: bool = False


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
    found["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip()
    import h5py

    found["hdf5"] = h5py.version.hdf5_version
    return found


def _configure_jax(precision: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")


def _check_output(config: RunConfig) -> None:
    """Refuse to damage existing files; done by rank 0 before anything is written."""
    out = config.out
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
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"output directory '{directory}' is not writable: choose another --out")


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


def run(config: RunConfig, comm=None, echo=print) -> RunResult:
    """Sample ``config.model_path`` on every rank of ``comm``; rank 0 reports."""
    t_start = time.perf_counter()
    from mpi4py import MPI

    comm = comm if comm is not None else MPI.COMM_WORLD.Clone()
    rank, size = comm.Get_rank(), comm.Get_size()
    timings: dict[str, float] = {}

    # Settings: pure, identical on every rank, so no communication is needed to agree.
    try:
        config = validate(config, size)
        error = None
    except UserError as exc:
        error = exc
    agree(comm, error, "validating the settings")

    from mpi_pymc import seeding, topology

    error, binding = None, None
    try:
        binding = topology.bind(comm, config.gpus_per_rank)
    except UserError as exc:
        error = exc
    agree(comm, error, "binding devices")

    # Output checks on rank 0 only (one view of the file system), verdict shared.
    error = None
    if rank == 0:
        try:
            _check_output(config)
        except UserError as exc:
            error = exc
    agree(comm, error, "checking the output path")

    root_seed = config.seed
    if root_seed is None:
        root_seed = comm.bcast(seeding.fresh_root_seed() if rank == 0 else None, root=0)
    config = config.replace(seed=root_seed)
    chain_group = seeding.chain_group(config.chains, size, rank)
    timings["startup"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    _configure_jax(config.precision)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    from mpi_pymc.model_loading import load_model

    error, model = None, None
    try:
        model = load_model(config.model_path, config.model_name)
    except Exception as exc:  # any failure to load is agreed on, never left to hang others
        error = exc
    agree(comm, error, "loading the model")
    timings["load_model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from mpi_pymc.compile import compile_model

    error, compiled = None, None
    try:
        compiled = compile_model(model, config.precision)
    except Exception as exc:
        error = UserError(f"could not translate the model to JAX: {type(exc).__name__}: {exc}")
    agree(comm, error, "compiling the model")
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

    if rank == 0:
        echo(
            f"mpi_pymc {__version__}: {config.model_path} on {size} rank(s), {config.chains} "
            f"chains ({config.chain_method}, {config.sampler}, {config.precision}), "
            f"seed {root_seed}, {config.tune} tune + {config.draws} draws"
        )

    t0 = time.perf_counter()
    from mpi_pymc.sampling import ChainGroupSampler, initial_positions

    error, positions = None, None
    try:
        positions = initial_positions(compiled, model, root_seed, chain_group)
    except ValueError as exc:
        error = UserError(str(exc))
    agree(comm, error, "initialising the chains")
    sampler = ChainGroupSampler(compiled, config)
    state = sampler.init(seeding.sampler_keys(root_seed, chain_group), positions)
    timings["init"] = time.perf_counter() - t0

    from mpi_pymc import storage

    io = storage.choose_io(config.io)
    if io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            "--io mpio needs an MPI-enabled h5py (h5py.get_config().mpi is False): "
            "run `make parallel-hdf5` or use --io shards"
        )
    layout = storage.layout_for(compiled, config.chains, config.draws, config.chunk_draws)
    bindings = comm.allgather(binding.as_dict())
    root_attrs = {
        "inference_library": "mpi_pymc",
        "inference_library_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root_seed": str(root_seed),
        "ranks": size,
        "chains": config.chains,
        "draws": config.draws,
        "tune": config.tune,
        "chain_groups": [[g.start, g.stop] for g in seeding.chain_groups(config.chains, size)],
        "settings": config.settings_for_fingerprint(),
        "binding": bindings,
        "versions": _versions(),
        "command_line": config.command_line or sys.argv,
        "model_path": os.path.abspath(config.model_path),
        "model_fingerprint": compiled.fingerprint,
        "model_fingerprint_parts": compiled.fingerprint_parts,
    }
    error = None
    if rank == 0 and config.overwrite:
        try:
            storage.remove_output(config.out)
        except OSError as exc:
            error = UserError(f"cannot remove existing '{config.out}': {exc}")
    agree(comm, error, "preparing the output")
    writer = storage.open_writer(io, config.out, comm, layout, chain_group, root_attrs)

    progress = _Progress(
        rank == 0 and (config.progress if config.progress is not None else sys.stderr.isatty()),
        config.tune + config.draws,
    )
    t0 = time.perf_counter()
    if config.tune > 0:
        if sampler.backend.warmup_in_chunks:
            done = 0
            while done < config.tune:
                n = min(config.chunk_draws, config.tune - done)
                state = sampler.warmup(state, n)
                done += n
                progress.update("warmup  ", comm.allreduce(done) // size, 0)
        else:
            state = sampler.warmup(state, config.tune)
            progress.update("warmup  ", config.tune, 0)
    np.asarray(sampler.iterations(state))  # wait for the device
    timings["warmup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    io_seconds = 0.0
    draws_completed = np.zeros(config.chains, dtype=np.int64)
    divergences_total = 0
    draw = 0
    stat_names = [v.name for v in layout.draw_groups["sample_stats"]]
    while draw < config.draws:
        n = min(config.chunk_draws, config.draws - draw)
        state, chunk_positions, stats = sampler.sample(state, n)
        constrained = sampler.constrain(chunk_positions)
        values = {
            ("posterior", var.name): arr
            for var, arr in zip(compiled.posterior_vars, constrained, strict=True)
        }
        for name in stat_names:
            values[("sample_stats", name)] = np.asarray(stats[name])
        t_io = time.perf_counter()
        writer.write_chunk(draw, values)
        io_seconds += time.perf_counter() - t_io
        draw += n
        local = np.full(len(chain_group), draw, dtype=np.int64)
        local_divergences = int(np.asarray(stats["diverging"]).sum())
        gathered = comm.allgather((local, local_divergences))
        draws_completed = np.concatenate([g[0] for g in gathered])
        divergences_total += sum(g[1] for g in gathered)
        t_io = time.perf_counter()
        writer.mark_completed(draws_completed)
        io_seconds += time.perf_counter() - t_io
        progress.update("sampling", config.tune + draw, divergences_total)
    progress.close()
    timings["sampling"] = time.perf_counter() - t0 - io_seconds
    timings["io"] = io_seconds

    t0 = time.perf_counter()
    summary = _diagnose(writer, compiled, chain_group, comm, config)
    timings["diagnostics"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    writer.set_attrs({"timings": timings, "divergences": divergences_total})
    if summary is not None:
        writer.set_attrs({"diagnostics": summary["json"]})
    writer.close()
    comm.Barrier()
    if rank == 0:
        if summary is not None:
            echo(summary["table"])
            for line in summary["warnings"]:
                echo(f"warning: {line}")
        echo(
            f"{divergences_total} divergences. Wrote {config.chains} chains x {config.draws} "
            f"draws to {config.out} ({io}); open with arviz.from_netcdf('{config.out}'). "
            f"Wall time {timings['total']:.1f}s"
        )
    return RunResult(
        out=config.out,
        root_seed=root_seed,
        chains=config.chains,
        draws_completed=draws_completed,
        timings=timings,
        summary=summary,
    )


def _diagnose(writer, compiled, chain_group, comm, config) -> dict | None:
    """R-hat/ESS over all chains by collectives; each rank reads back only its own chains."""
    from mpi_pymc import diagnostics
    from mpi_pymc.diagnostics_mpi import distributed_diagnostics

    columns = _flat_names(compiled)
    local = local_draws_matrix(writer, compiled, chain_group)
    stats = distributed_diagnostics(local, comm)
    names = [c[0] for c in columns]
    table = diagnostics.summary_table(names, stats)
    warns = diagnostics.convergence_warnings(stats, config.chains, names)
    as_json = {
        "parameters": names,
        **{k: np.asarray(v).tolist() for k, v in stats.items() if isinstance(v, np.ndarray)},
    }
    return {"table": table, "warnings": warns, "json": as_json, "stats": stats, "names": names}


def local_draws_matrix(writer, compiled, chain_group: range) -> np.ndarray:
    """This rank's chains as (chains, draws, parameters), read back from its own file view."""
    pieces = []
    lo, hi = chain_group.start, chain_group.stop
    source = writer.file if hasattr(writer, "file") else writer.shard
    offset = 0 if hasattr(writer, "file") else lo
    for var in compiled.posterior_vars:
        data = source["posterior"][var.name][lo - offset : hi - offset]
        pieces.append(np.asarray(data, dtype=np.float64).reshape(data.shape[0], data.shape[1], -1))
    return np.concatenate(pieces, axis=2)
