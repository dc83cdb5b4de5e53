"""``python -m mpi_pymc postprocess``: ``log_likelihood`` and ``posterior_predictive`` groups of a
finished run, computed by every rank for its own chains and written into the run's file.

Any number of ranks may run the pass (not necessarily the sampling run's): each takes a
contiguous chain group, reads its chains' posterior draws, and evaluates PyMC's own graphs —
the pointwise log-likelihood ``pm.compute_log_likelihood`` builds, and the observed variables'
forward-sampling graph — translated to JAX like the log-density (data as arguments), vectorized
over blocks of draws sized to a memory budget. A block never mixes chains, so every draw is
computed in a program of the same shape whatever the rank count: the groups are bit-identical
on 1, 2 or 4 ranks. Posterior-predictive draw ``d`` of chain ``c`` uses the key
``fold_in(seeding.predictive_key(root_seed, c), d)``.

``jobscript`` builds the CLI on login nodes without NumPy: NumPy and the rest load lazily.

The groups are written by the file's own writer (see ``storage.open_group_writer``); a group
is marked complete only after every rank has written, so a killed pass can be repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpi_pymc.core.config import UserError, parse_model_spec
from mpi_pymc.core.errors import AgreedError, on_every_rank

if TYPE_CHECKING:
    import numpy as np

LOG_LIKELIHOOD = "log_likelihood"
POSTERIOR_PREDICTIVE = "posterior_predictive"
DEFAULT_MEMORY_BUDGET = "1G"
# Working memory of one draw, as a multiple of its outputs: inputs, intermediates of the
# vectorized program (the linear predictor, the elementwise terms) and the copy to the host.
WORKING_MEMORY_FACTOR = 4
# Room for HDF5 metadata (groups, scales, attributes) on top of the values themselves.
METADATA_ALLOWANCE = 1 << 20
# Target size of one HDF5 chunk (one chain, some draws) of a new variable.
CHUNK_BYTES = 4 << 20
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class PostprocessConfig:
    """The pass's settings, validated identically on every rank (:func:`validate`)."""

    out: str
    model_path: str | None = None
    model_name: str | None = None
    log_likelihood: bool = False
    posterior_predictive: bool = False
    var_names: tuple[str, ...] = ()  # observed variables (default: all)
    thin: int = 1
    precision: str | None = None  # default: the sampling run's
    block_draws: int | None = None  # default: from memory_budget
    memory_budget: int = _SIZE_UNITS["G"]
    overwrite_groups: bool = False
    gpus_per_rank: int | None = None

    @property
    def groups(self) -> list[str]:
        wanted = {
            LOG_LIKELIHOOD: self.log_likelihood,
            POSTERIOR_PREDICTIVE: self.posterior_predictive,
        }
        return [name for name, on in wanted.items() if on]


@dataclass
class PostprocessResult:
    out: str
    groups: list[str]
    chains: int
    draws: int  # per chain, after --thin
    bytes_written: int
    timings: dict = field(default_factory=dict)


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5G`` or a number of bytes."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _SIZE_UNITS else ""
    try:
        size = float(value[: len(value) - len(unit)]) * _SIZE_UNITS[unit]
    except ValueError:
        raise UserError(f"--memory-budget: expected a size like 512M or 2G, got '{text}'") from None
    if size < 1:
        raise UserError(f"--memory-budget must be positive, got '{text}'")
    return int(size)


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# --- command line ------------------------------------------------------------------------


def add_parser(commands) -> None:
    """The ``postprocess`` subcommand and its options."""
    parser = commands.add_parser(
        "postprocess",
        help="add log_likelihood / posterior_predictive groups to a finished output file",
        description="Compute the log_likelihood and/or posterior_predictive groups of a "
        "finished run on every rank (each for its own chains) and write them into OUT.h5 with "
        "the file's writer. Launch with any number of ranks.",
    )
    parser.add_argument("model", metavar="MODEL.py[:NAME]", help="the sampled model's file")
    parser.add_argument("out", metavar="OUT.h5", help="the run's output file")
    parser.add_argument("--log-likelihood", action="store_true", help="add log_likelihood")
    parser.add_argument(
        "--posterior-predictive", action="store_true", help="add posterior_predictive"
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME",
        help="observed variable to include (repeat; default all)",
    )
    parser.add_argument("--thin", type=int, default=1, help="keep every K-th draw (1)")
    parser.add_argument(
        "--precision", help="float64 or float32 (default: the sampling run's precision)"
    )
    parser.add_argument(
        "--memory-budget",
        default=DEFAULT_MEMORY_BUDGET,
        metavar="SIZE",
        help=f"working memory per rank that sizes the blocks of draws ({DEFAULT_MEMORY_BUDGET})",
    )
    parser.add_argument(
        "--block-draws", type=int, metavar="N", help="draws per block (overrides the budget)"
    )
    parser.add_argument(
        "--overwrite-groups",
        action="store_true",
        help="replace groups of these names that a previous pass completed (an incomplete "
        "group, left by an interrupted pass, is always replaced)",
    )
    parser.add_argument(
        "--gpus-per-rank", type=int, help="GPUs each rank binds (default 1 when visible, else CPU)"
    )


def config_from_args(args: argparse.Namespace) -> PostprocessConfig:
    path, name = parse_model_spec(args.model)
    return PostprocessConfig(
        out=args.out,
        model_path=path,
        model_name=name,
        log_likelihood=args.log_likelihood,
        posterior_predictive=args.posterior_predictive,
        var_names=tuple(args.var),
        thin=args.thin,
        precision=args.precision,
        block_draws=args.block_draws,
        memory_budget=parse_size(args.memory_budget),
        overwrite_groups=args.overwrite_groups,
        gpus_per_rank=args.gpus_per_rank,
    )


def validate(config: PostprocessConfig) -> None:
    """Pure checks of the settings; one line naming the option when they are wrong."""
    if not config.groups:
        raise UserError("nothing to do: pass --log-likelihood and/or --posterior-predictive")
    if config.thin < 1:
        raise UserError(f"--thin must be a positive integer, got {config.thin}")
    if config.block_draws is not None and config.block_draws < 1:
        raise UserError(f"--block-draws must be a positive integer, got {config.block_draws}")
    if config.precision not in (None, "float32", "float64"):
        raise UserError(f"--precision must be float64 or float32, got '{config.precision}'")
    if not os.path.isfile(config.out):
        raise UserError(f"output file '{config.out}' does not exist: sample first")


# --- what the file says ------------------------------------------------------------------


@dataclass
class RunFacts:
    """What the pass needs to know about the finished run, read by rank 0."""

    root_seed: int
    chains: int
    draws: int
    io: str
    precision: str
    fingerprint_parts: dict
    groups: dict[str, bool]  # groups added after sampling -> complete?


def read_run_facts(path: str) -> RunFacts:
    import h5py
    import numpy as np

    from mpi_pymc.output import storage

    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            if "root_seed" not in attrs or "posterior" not in f:
                raise UserError(f"'{path}' is not an mpi_pymc output file")
            draws = int(f["posterior"]["draw"].shape[0])
            completed = np.asarray(attrs["draws_completed"])
            settings = json.loads(attrs["settings"])
            facts = RunFacts(
                root_seed=int(attrs["root_seed"]),
                chains=int(attrs["chains"]),
                draws=draws,
                io=str(attrs.get("io", "shards")),
                precision=str(settings.get("precision", "float64")),
                fingerprint_parts=json.loads(attrs["model_fingerprint_parts"]),
                groups={},
            )
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc}") from None
    if np.any(completed < draws):
        raise UserError(
            f"'{path}' is a partial run ({int(completed.min())} of {draws} draws in some "
            "chain): finish it with `run --resume` before post-processing"
        )
    facts.groups = storage.added_group_states(path)
    return facts


def groups_to_replace(config: PostprocessConfig, facts: RunFacts) -> list[str]:
    """Requested groups the file already has; refuse complete ones without --overwrite-groups."""
    existing = [g for g in config.groups if g in facts.groups]
    complete = [g for g in existing if facts.groups[g]]
    if complete and not config.overwrite_groups:
        raise UserError(
            f"'{config.out}' already has the {', '.join(complete)} group(s): pass "
            "--overwrite-groups to replace them"
        )
    return existing


# --- the model's pointwise programs --------------------------------------------------------


@dataclass
class Pointwise:
    """One draw's outputs as a JAX function ``(key, *free_values, *data) -> [arrays]``.

    ``outputs`` lists (group, variable) in the order the function returns them.
    """

    function: Callable
    free_names: list[str]
    data: tuple
    outputs: list[tuple[str, Any]]  # (group, storage.Variable)
    coords: dict[str, np.ndarray]
    float_dtype: np.dtype


def _observed_names(model, var_names: tuple[str, ...]) -> list[str]:
    observed = [rv.name for rv in model.observed_RVs]
    if not observed:
        raise UserError("the model has no observed variables: nothing to post-process")
    unknown = [name for name in var_names if name not in observed]
    if unknown:
        raise UserError(
            f"--var {', '.join(unknown)}: not an observed variable of the model "
            f"(observed: {', '.join(observed)})"
        )
    return list(var_names) or observed


def _log_likelihood_graph(model, names: list[str]):
    """PyMC's pointwise log-likelihood, as ``pm.compute_log_likelihood`` builds it: of the
    constrained free values (the posterior's), transforms removed."""
    from pymc.model.transform.conditioning import remove_value_transforms

    umodel = remove_value_transforms(model)
    outputs = umodel.logp(vars=[umodel[name] for name in names], sum=False)
    values = {var.name: var for var in umodel.value_vars}
    return [values[rv.name] for rv in model.free_RVs], list(outputs)


def _predictive_graph(model, names: list[str]):
    """The observed variables' forward-sampling graph given the free variables.

    Free RVs become inputs; each random generator becomes an input (the JAX backend threads
    ``{"jax_state": key}`` through it); integer scalars such as dimension lengths become
    constants, because JAX needs sizes of random draws at trace time.
    """
    import pytensor.tensor as pt
    from pytensor.compile import SharedVariable
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor.random.type import RandomType

    free_inputs = [rv.type() for rv in model.free_RVs]
    outputs = clone_replace(
        [model[name] for name in names], replace=dict(zip(model.free_RVs, free_inputs, strict=True))
    )
    replace: dict[Any, Any] = {}
    rngs: list = []
    for var in graph_inputs(outputs):
        if isinstance(var, SharedVariable) and isinstance(var.type, RandomType):
            rngs.append(var.type())
            replace[var] = rngs[-1]
        elif isinstance(var, SharedVariable) and var.type.ndim == 0 and "int" in var.type.dtype:
            replace[var] = pt.constant(var.get_value(), dtype=var.type.dtype)
    return free_inputs, rngs, clone_replace(outputs, replace=replace)


def build_pointwise(model, compiled, config: PostprocessConfig, precision: str) -> Pointwise:
    """JAX program of one draw for the requested groups and observed variables."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.model.compile import data_inputs, data_values, jaxify
    from mpi_pymc.output.storage import Variable

    jax.config.update("jax_enable_x64", precision == "float64")
    float_dtype = np.dtype(precision)
    names = _observed_names(model, config.var_names)
    graphs: list[tuple[str, list, list, list]] = []  # (group, inputs, generators, outputs)
    if config.log_likelihood:
        value_vars, log_likelihoods = _log_likelihood_graph(model, names)
        graphs.append((LOG_LIKELIHOOD, value_vars, [], log_likelihoods))
    if config.posterior_predictive:
        graphs.append((POSTERIOR_PREDICTIVE, *_predictive_graph(model, names)))
    data_vars = data_inputs([out for *_, outputs in graphs for out in outputs])
    data = tuple(jnp.asarray(v) for v in data_values(data_vars, float_dtype))
    programs = [
        (
            jaxify([*inputs, *rngs], outputs, data_vars, float_dtype=float_dtype),
            len(rngs),
            [
                float_dtype if out.type.dtype.startswith("float") else out.type.dtype
                for out in outputs
            ],
        )
        for _, inputs, rngs, outputs in graphs
    ]

    def one_draw(key, free: list, data_args: tuple) -> list:
        results = []
        for program, n_rngs, dtypes in programs:
            rngs = [{"jax_state": k} for k in jax.random.split(key, n_rngs)] if n_rngs else []
            values = program(*free, *rngs, *data_args)
            results += [jnp.asarray(v, dtype=d) for v, d in zip(values, dtypes, strict=True)]
        return results

    free_names = [rv.name for rv in model.free_RVs]
    shapes = {v.name: v.shape for v in compiled.posterior_vars}
    example = jax.eval_shape(
        one_draw,
        jax.ShapeDtypeStruct((2,), jnp.uint32),
        [jax.ShapeDtypeStruct(shapes[name], float_dtype) for name in free_names],
        data,
    )
    coords = dict(compiled.coords)
    outputs = []
    labels = [(group, name) for group, *_ in graphs for name in names]
    for (group, name), value in zip(labels, example, strict=True):
        shape = tuple(value.shape)
        dims = _dims_of(name, shape, compiled.observed_data[name][1], coords)
        for dim, size in zip(dims, shape, strict=True):
            coords.setdefault(dim, np.arange(size))
        outputs.append((group, Variable(name, dims, shape, np.dtype(value.dtype).name)))
    return Pointwise(one_draw, free_names, data, outputs, coords, float_dtype)


def _dims_of(name: str, shape: tuple, observed_dims: tuple, coords: dict) -> tuple[str, ...]:
    """The observed variable's dims for an output of ``shape`` (a multivariate log-likelihood
    drops the event dims); unnamed dims are ``NAME_dim_i``, as elsewhere in the file."""
    dims = tuple(observed_dims[: len(shape)])
    if len(dims) == len(shape) and all(
        d in coords and len(coords[d]) == size for d, size in zip(dims, shape, strict=True)
    ):
        return dims
    return tuple(f"{name}_dim_{i}" for i in range(len(shape)))


def check_same_model(compiled, facts: RunFacts) -> str | None:
    """Refuse a model whose variables or data differ from the sampled one's. The log-density
    at the initial point alone may differ (other package versions, or a file written before
    the fingerprint held it): then a note (returned) is enough."""
    ours, theirs = compiled.fingerprint_parts, facts.fingerprint_parts
    for part, what in (("variables", "free variables"), ("data", "data")):
        if json.loads(json.dumps(ours[part])) != theirs.get(part):
            raise UserError(
                f"the model's {what} differ from the sampled run's: post-process with the "
                "model file (and data) the run sampled"
            )
    key = "logdensity_at_initial_point"
    if ours[key] != theirs.get(key):
        return (
            "note: the model's log-density at its initial point differs from the sampled "
            "run's (other PyMC/JAX versions?); its variables and data match"
        )
    return None


# --- plan: blocks, sizes, disk ------------------------------------------------------------


@dataclass
class Plan:
    kept_draws: np.ndarray  # posterior draw indices kept (--thin)
    block: int  # draws per vectorized block
    chunk_draws: int  # draws per HDF5 chunk
    bytes_to_write: int


def make_plan(config: PostprocessConfig, facts: RunFacts, pointwise: Pointwise) -> Plan:
    """Blocks sized to the memory budget; the sizes are the same on every rank count."""
    import numpy as np

    kept = np.arange(0, facts.draws, config.thin)
    per_draw = [_nbytes(var) for _, var in pointwise.outputs]
    block = config.block_draws or max(
        1, config.memory_budget // (WORKING_MEMORY_FACTOR * sum(per_draw))
    )
    chunk = max(1, CHUNK_BYTES // max(per_draw))
    return Plan(
        kept_draws=kept,
        block=int(min(block, len(kept))),
        chunk_draws=int(min(chunk, len(kept))),
        bytes_to_write=facts.chains * len(kept) * sum(per_draw),
    )


def _nbytes(var) -> int:
    import numpy as np

    return int(np.prod(var.shape, dtype=np.int64)) * np.dtype(var.dtype).itemsize


def check_disk(path: str, needed: int) -> int:
    """Free bytes where the groups go; one line when ``needed`` does not fit."""
    directory = os.path.dirname(os.path.abspath(path))
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise UserError(
            f"not enough disk space in {directory}: the new groups need {format_bytes(needed)}, "
            f"{format_bytes(free)} free — free some, or use --thin K, --var or --precision float32"
        )
    return free


def _needed_bytes(plan: Plan, facts: RunFacts, path: str) -> int:
    needed = plan.bytes_to_write + METADATA_ALLOWANCE
    if facts.io != "mpio":  # the main file is rewritten aside, then renamed over OUT
        needed += os.path.getsize(path)
    return needed


def plan_line(config: PostprocessConfig, facts: RunFacts, plan: Plan, pointwise, free) -> str:
    names = sorted({var.name for _, var in pointwise.outputs})
    thinned = f" (every {config.thin}th of {facts.draws})" if config.thin > 1 else ""
    return (
        f"postprocess: {' and '.join(config.groups)} of {', '.join(names)} for {facts.chains} "
        f"chains x {len(plan.kept_draws)} draws{thinned}: {format_bytes(plan.bytes_to_write)} "
        f"to write ({format_bytes(free)} free), blocks of {plan.block} draws"
    )


# --- the pass ------------------------------------------------------------------------------


def compute_chain(writer, pointwise: Pointwise, program, plan: Plan, chain: int, root_seed: int):
    """Every block of one chain: read its posterior draws, evaluate, write."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.core.seeding import predictive_key

    chain_key = jnp.asarray(predictive_key(root_seed, chain))
    kept = plan.kept_draws
    step = int(kept[1] - kept[0]) if len(kept) > 1 else 1
    for start in range(0, len(kept), plan.block):
        draws = kept[start : start + plan.block]
        window = slice(int(draws[0]), int(draws[-1]) + 1, step)
        # The last block is padded to the full size: one compiled program for every block.
        pad = plan.block - len(draws)
        free = [
            _pad(
                np.asarray(writer.read("posterior", name, chain, window), pointwise.float_dtype),
                pad,
            )
            for name in pointwise.free_names
        ]
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(chain_key, _pad(draws, pad))
        values = program(keys, free, pointwise.data)
        for (group, var), value in zip(pointwise.outputs, values, strict=True):
            writer.write(group, var.name, chain, start, np.asarray(value)[: len(draws)])


def _pad(values: np.ndarray, pad: int) -> np.ndarray:
    import numpy as np

    if pad == 0:
        return values
    return np.concatenate([values, np.repeat(values[-1:], pad, axis=0)])


def postprocess(config: PostprocessConfig, comm=None, echo=print, model=None) -> PostprocessResult:
    """Add the requested groups to ``config.out`` on every rank of ``comm``; rank 0 reports
    through ``echo``. ``model``: a ``pm.Model`` instead of ``config.model_path``."""
    import jax
    from mpi4py import MPI

    from mpi_pymc.core import seeding, topology
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.output import storage

    comm = comm if comm is not None else MPI.COMM_WORLD.Clone()
    rank, size = comm.Get_rank(), comm.Get_size()
    t_start = time.perf_counter()

    def say(line: str) -> None:
        if rank == 0:
            echo(line)

    on_every_rank(comm, "validating the settings", lambda: validate(config))
    facts = comm.bcast(
        on_every_rank(
            comm, "reading the output", lambda: read_run_facts(config.out) if rank == 0 else None
        ),
        root=0,
    )
    if facts.chains < size:
        raise AgreedError(f"the run has {facts.chains} chains: launch at most {facts.chains} ranks")
    if facts.io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            f"'{config.out}' was written by the mpio writer: post-process it with an "
            "MPI-enabled h5py (make parallel-hdf5)"
        )
    replaced = on_every_rank(comm, "checking the groups", lambda: groups_to_replace(config, facts))
    on_every_rank(comm, "binding devices", lambda: topology.bind(comm, config.gpus_per_rank))
    model = _load(comm, config, model)
    compiled = on_every_rank(
        comm,
        "compiling the model",
        lambda: compile_model(model, facts.precision),
        catch=(Exception,),
        reword=lambda exc: f"could not translate the model to JAX: {type(exc).__name__}: {exc}",
    )
    note = on_every_rank(comm, "checking the model", lambda: check_same_model(compiled, facts))
    if note:
        say(note)
    precision = config.precision or facts.precision
    pointwise = on_every_rank(
        comm,
        "building the post-processing programs",
        lambda: build_pointwise(model, compiled, config, precision),
        catch=(Exception,),
        reword=_reword,
    )
    plan = make_plan(config, facts, pointwise)
    free = comm.bcast(
        on_every_rank(
            comm,
            "checking the disk space",
            lambda: (
                check_disk(config.out, _needed_bytes(plan, facts, config.out))
                if rank == 0
                else None
            ),
        ),
        root=0,
    )
    say(plan_line(config, facts, plan, pointwise, free))
    for group in replaced:
        state = "complete" if facts.groups[group] else "incomplete (interrupted pass)"
        say(f"replacing the {state} {group} group")
    chain_group = seeding.chain_group(facts.chains, size, rank)
    layout = storage.Layout(
        chains=facts.chains,
        draws=len(plan.kept_draws),
        chunk_draws=plan.chunk_draws,
        coords=pointwise.coords,
        draw_groups={g: [v for group, v in pointwise.outputs if group == g] for g in config.groups},
    )
    attrs = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inference_library": "mpi_pymc",
        "thin": config.thin,
        "precision": precision,
    }
    writer = on_every_rank(
        comm,
        "opening the output",
        lambda: storage.open_group_writer(
            facts.io, config.out, comm, layout, chain_group, plan.kept_draws, attrs
        ),
        catch=(OSError,),
        reword=str,
    )
    program = jax.jit(jax.vmap(pointwise.function, in_axes=(0, 0, None)))
    t_compute = time.perf_counter()
    for chain in chain_group:
        _injected_kill(chain)
        compute_chain(writer, pointwise, program, plan, chain, facts.root_seed)
    compute_seconds = time.perf_counter() - t_compute
    writer.finish()
    seconds = time.perf_counter() - t_start
    say(
        f"wrote {' and '.join(config.groups)} for {facts.chains} chains x "
        f"{len(plan.kept_draws)} draws into {config.out} ({facts.io}) in {seconds:.1f}s"
    )
    return PostprocessResult(
        out=config.out,
        groups=config.groups,
        chains=facts.chains,
        draws=len(plan.kept_draws),
        bytes_written=plan.bytes_to_write,
        timings={"total": seconds, "compute_and_write": compute_seconds},
    )


def _reword(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    return f"could not build the post-processing programs: {type(exc).__name__}: {exc}"


def _load(comm, config: PostprocessConfig, model):
    """The given model, or the model file imported on every rank (failures agreed)."""
    from mpi_pymc.model.loading import check_model, load_model

    if model is not None:
        on_every_rank(comm, "checking the model", lambda: check_model(model, "the model"))
        return model
    return on_every_rank(
        comm,
        "loading the model",
        lambda: load_model(str(config.model_path), config.model_name),
        catch=(Exception,),
    )


def _injected_kill(chain: int) -> None:
    """Test hook: ``MPI_PYMC_KILL_AT_CHAIN=C`` SIGKILLs the rank about to compute chain ``C``,
    after others may have written theirs: a pass killed half-way, for the tests."""
    if os.environ.get("MPI_PYMC_KILL_AT_CHAIN") == str(chain):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
