"""Run settings: one typed object, validated identically on every rank before any collective."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

SAMPLERS = ("nuts", "numpyro", "blackjax", "hmc")
CHAIN_METHODS = ("auto", "vectorized", "sequential")
PRECISIONS = ("float64", "float32")
# --metric: the mass matrix of the nuts and hmc samplers (sampling/metric.py).
METRICS = ("auto", "diag", "low_rank", "dense")
# Metrics the numpyro and blackjax adapters take (auto means their diagonal).
LIBRARY_METRICS = ("auto", "diag")
IO_MODES = ("auto", "mpio", "shards")
SUMMARY_MODES = ("table", "warnings")
# --until-rhat's default: the R-hat bound of an --until-ess goal.
DEFAULT_UNTIL_RHAT = 1.01


class UserError(Exception):
    """A mistake the user can fix; reported as one line, without a traceback."""


@dataclass(frozen=True)
class RunConfig:
    # The model file; None when the Python API was handed a pm.Model object instead.
    model_path: str | None = None
    model_name: str | None = None
    draws: int = 1000
    tune: int = 1000
    chains: int | None = None
    chains_per_rank: int | None = None
    seed: int | None = None
    out: str | None = None
    sampler: str = "nuts"
    chain_method: str = "auto"
    target_accept: float = 0.8
    max_tree_depth: int = 10
    metric: str = "auto"
    adapt_group: int = 1
    precision: str = "float64"
    # --data-shards: the observed rows split over this many of a rank's devices (row_shards).
    data_shards: int = 1
    # The dim the rows are over (default: the observed variables' leading dimension).
    data_row_dim: str | None = None
    gpus_per_rank: int | None = None
    chunk_draws: int = 100
    progress: bool | None = None
    io: str = "auto"
    # Shards writer: pack the shards into OUT when the run completes (output/packing.py).
    pack: bool = True
    overwrite: bool = False
    resume: bool = False
    until_ess: int | None = None
    # The tail-ESS part of the goal: None is --until-ess itself, 0 no tail goal.
    until_tail_ess: int | None = None
    until_rhat: float = DEFAULT_UNTIL_RHAT
    max_time: float | None = None
    # Compare the JAX log-density with PyTensor's own before sampling (translation.py).
    check_logp: bool = True
    # Post-processing groups added once the draws are complete (postprocessing.py).
    log_likelihood: bool = False
    posterior_predictive: bool = False
    # What rank 0 prints when the run completes: "table" (the CLI: the per-parameter table and
    # its warnings) or "warnings" (sample(), as pm.sample: PyMC's warnings and one closing line).
    summary: str = "table"
    # How the start line names the model (sample() passes the model's name); default: its file.
    model_label: str | None = None
    command_line: list[str] = field(default_factory=list)

    def settings_for_fingerprint(self) -> dict:
        """Settings that change draws; a resume must match them exactly."""
        keys = (
            "draws",
            "tune",
            "seed",
            "sampler",
            "chain_method",
            "target_accept",
            "max_tree_depth",
            "metric",
            "adapt_group",
            "precision",
            "chunk_draws",
            "data_shards",
            "data_row_dim",
        )
        return {k: getattr(self, k) for k in keys}

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def tail_goal(self) -> int | None:
        """Min tail ESS the ``--until-ess`` goal asks for (None without a goal)."""
        if self.until_ess is None:
            return None
        return self.until_ess if self.until_tail_ess is None else self.until_tail_ess


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """Split ``model.py[:NAME]`` into path and attribute name."""
    path, sep, name = spec.rpartition(":")
    if sep and path and name.isidentifier():
        return path, name
    return spec, None


def _check_adapt_group(config: RunConfig, chains: int, world_size: int) -> None:
    group = config.adapt_group
    if group < 1:
        raise UserError(f"--adapt-group must be a positive integer, got {group}")
    if group == 1:
        return
    if config.sampler != "hmc":
        raise UserError(
            f"--adapt-group pools hmc's warmup; --sampler {config.sampler} adapts each chain on "
            "its own: pass --sampler hmc or drop --adapt-group"
        )
    if config.chain_method == "sequential":
        raise UserError(
            "--adapt-group needs the chains of a group to step together: drop --chain-method "
            "sequential or --adapt-group"
        )
    from mpi_pymc.core.seeding import chain_groups

    sizes = sorted({len(g) for g in chain_groups(chains, world_size)})
    if any(size % group for size in sizes):
        per_rank = " or ".join(str(size) for size in sizes)
        raise UserError(
            f"--adapt-group {group} must divide every rank's chains ({chains} chains on "
            f"{world_size} ranks gives {per_rank} per rank): pass --chains-per-rank a multiple "
            f"of {group}"
        )


def resolve_chain_method(config: RunConfig, platform: str) -> RunConfig:
    """``--chain-method auto``: sequential chains on a CPU rank, vectorized on a GPU.

    Vectorized NUTS makes every chain of a rank wait for the deepest tree of the batch at every
    iteration, which a CPU pays in full (measurements in ``benchmarks/README.md``); a GPU runs
    the batch in parallel and needs it to be busy. Adaptation groups step in lockstep and need
    vectorized chains anywhere.
    """
    if config.chain_method != "auto":
        return config
    vectorized = platform == "gpu" or config.adapt_group > 1
    return config.replace(chain_method="vectorized" if vectorized else "sequential")


def check_model_file(path: str | None) -> None:
    """A model file is MODEL.py, or MODEL.pkl as the Python API pickles a ``pm.Model``."""
    if path is None:
        raise UserError("no model given: pass a model file MODEL.py[:NAME] or a pm.Model")
    if not path.endswith((".py", ".pkl")):
        raise UserError(f"model file '{path}' is not a .py file: pass model.py[:NAME]")
    if not os.path.isfile(path):
        raise UserError(f"model file '{path}' does not exist: check the path")


def parse_duration(text: str) -> float:
    """Seconds from ``SECONDS``, ``MM:SS``, ``HH:MM:SS`` or ``D-HH[:MM[:SS]]`` (SLURM's forms)."""
    text = text.strip()
    try:
        days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [float(part) for part in rest.split(":")]
        if not 1 <= len(parts) <= 3 or any(part < 0 for part in parts) or float(days) < 0:
            raise ValueError
        if "-" in text:  # D-HH, D-HH:MM, D-HH:MM:SS
            parts += [0.0] * (3 - len(parts))
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds + float(days) * 86400
    except ValueError:
        raise UserError(
            f"--max-time '{text}' is not a duration: give seconds (3600), MM:SS, HH:MM:SS or "
            "D-HH:MM:SS"
        ) from None


def default_out_path(model_path: str | None) -> str:
    return str(Path(model_path or "model").with_suffix("").name) + ".h5"


def validate(config: RunConfig, world_size: int, model_given: bool = False) -> RunConfig:
    """Check every setting; return the config with chains and output resolved.

    ``model_given``: the Python API holds a ``pm.Model`` object, so there is no file to check.
    Pure and deterministic, so every rank reaches the same verdict without talking.
    """
    if not model_given:
        check_model_file(config.model_path)
    for name in ("draws", "chunk_draws"):
        value = getattr(config, name)
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if config.tune < 0:
        raise UserError(f"--tune must be zero or more, got {config.tune}")
    if config.sampler not in SAMPLERS:
        raise UserError(
            f"unknown --sampler '{config.sampler}': choose one of {', '.join(SAMPLERS)}"
        )
    if config.chain_method not in CHAIN_METHODS:
        raise UserError(
            f"unknown --chain-method '{config.chain_method}': "
            f"choose one of {', '.join(CHAIN_METHODS)}"
        )
    if config.precision not in PRECISIONS:
        raise UserError(
            f"unknown --precision '{config.precision}': choose one of {', '.join(PRECISIONS)}"
        )
    if config.io not in IO_MODES:
        raise UserError(f"unknown --io '{config.io}': choose one of {', '.join(IO_MODES)}")
    if config.summary not in SUMMARY_MODES:
        raise UserError(
            f"unknown --summary '{config.summary}': choose one of {', '.join(SUMMARY_MODES)}"
        )
    if not 0.0 < config.target_accept < 1.0:
        raise UserError(
            f"--target-accept must lie strictly between 0 and 1, got {config.target_accept}"
        )
    if config.metric not in METRICS:
        raise UserError(f"unknown --metric '{config.metric}': choose one of {', '.join(METRICS)}")
    if config.metric not in LIBRARY_METRICS and config.sampler not in ("nuts", "hmc"):
        raise UserError(
            f"--metric {config.metric} is the project's own samplers' (--sampler nuts or hmc); "
            f"--sampler {config.sampler} adapts a diagonal: pass --metric diag or another sampler"
        )
    if config.max_tree_depth < 1:
        raise UserError(f"--max-tree-depth must be at least 1, got {config.max_tree_depth}")
    if config.seed is not None and config.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {config.seed}")
    if config.data_shards < 1:
        raise UserError(f"--data-shards must be a positive integer, got {config.data_shards}")
    if config.data_row_dim is not None and config.data_shards == 1:
        raise UserError("--data-row-dim names the rows of --data-shards: pass --data-shards S too")
    if config.gpus_per_rank is not None and config.gpus_per_rank < 0:
        raise UserError(f"--gpus-per-rank must be zero or more, got {config.gpus_per_rank}")
    if config.chains is not None and config.chains_per_rank is not None:
        raise UserError("give either --chains (total) or --chains-per-rank, not both")
    if config.chains_per_rank is not None:
        if config.chains_per_rank <= 0:
            raise UserError(f"--chains-per-rank must be positive, got {config.chains_per_rank}")
        chains = config.chains_per_rank * world_size
    else:
        chains = config.chains if config.chains is not None else max(4, world_size)
    if chains <= 0:
        raise UserError(f"--chains must be positive, got {chains}")
    if chains < world_size:
        raise UserError(
            f"{world_size} ranks but only {chains} chains: every rank needs at least one chain; "
            f"pass --chains {world_size} or more, or launch fewer ranks"
        )
    _check_adapt_group(config, chains, world_size)
    if config.until_ess is not None and config.until_ess <= 0:
        raise UserError(f"--until-ess must be a positive integer, got {config.until_ess}")
    if config.until_tail_ess is not None:
        if config.until_ess is None:
            raise UserError(
                "--until-tail-ess is part of an --until-ess goal: pass --until-ess N too"
            )
        if config.until_tail_ess < 0:
            raise UserError(
                f"--until-tail-ess must be 0 (no tail goal) or more, got {config.until_tail_ess}"
            )
    if not config.until_rhat > 1.0:
        raise UserError(f"--until-rhat must be above 1 (e.g. 1.01), got {config.until_rhat}")
    if config.max_time is not None and config.max_time <= 0:
        raise UserError(f"--max-time must be positive, got {config.max_time:g} seconds")
    if config.overwrite and config.resume:
        raise UserError("--overwrite and --resume contradict each other: pick one")
    out = config.out or default_out_path(config.model_path)
    return config.replace(chains=chains, chains_per_rank=None, out=out)
