"""What a post-processing pass will do to a finished run's file: the facts it reads from the
file, which groups it (re)places, the blocks of draws that fit the memory budget, and whether
the disk has room."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpi_pymc.core.config import UserError
from mpi_pymc.postprocessing.settings import (
    CHUNK_BYTES,
    METADATA_ALLOWANCE,
    WORKING_MEMORY_FACTOR,
    PostprocessConfig,
    format_bytes,
)

if TYPE_CHECKING:
    import numpy as np

    from mpi_pymc.postprocessing.pointwise import Pointwise


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
    packed: bool = True  # one self-contained file (a shards output packed, or mpio)


def read_run_facts(path: str) -> RunFacts:
    import h5py
    import numpy as np

    from mpi_pymc.output import added_groups
    from mpi_pymc.output.packing import check_shards, is_packed

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
    check_shards(path)  # never post-process draws that read as NaN
    facts.packed = is_packed(path)
    facts.groups = added_groups.added_group_states(path)
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
