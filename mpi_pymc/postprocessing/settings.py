"""The post-processing pass's settings: ``python -m mpi_pymc postprocess``'s options, their
validation, and the memory-budget and size parsing (no NumPy: ``jobscript`` builds the CLI on
login nodes without it)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from mpi_pymc.core.config import UserError, parse_model_spec

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
