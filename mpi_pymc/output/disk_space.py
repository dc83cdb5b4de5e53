"""Disk preflight: a run whose output and checkpoint cannot fit is refused before it writes.

Every dataset of the output is allocated before the first draw (``layout.output_bytes``), so
its size is known exactly enough up front; a checkpoint is kept with the previous one, and a new
one is written beside both before the older goes, so at its largest three copies exist. Free
space is what ``statvfs`` grants an unprivileged user (``f_bavail``); quotas are not visible this
way, and a quota hit mid-run is caught as a write error instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpi_pymc.core.config import UserError

# Per checkpoint leaf and file: the npz (zip) entry headers and the JSON metadata.
CHECKPOINT_LEAF_OVERHEAD = 512
CHECKPOINT_FILE_OVERHEAD = 16 * 1024


def checkpoint_bytes(state_bytes: int, leaves: int, resume: bool = False, parts: int = 1) -> int:
    """Room the checkpoints need: the latest and the previous one are kept, and a new one is
    written beside them before the older goes (on resume two are already on disk). ``parts``:
    the part files one checkpoint is written as (one per rank)."""
    one = state_bytes + parts * (leaves * CHECKPOINT_LEAF_OVERHEAD + CHECKPOINT_FILE_OVERHEAD)
    return one if resume else 3 * one


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def shortfall(out: str, output: int, checkpoint: int, free: int, where: str) -> str | None:
    """The refusal for an output that does not fit (None when it does)."""
    needed = output + checkpoint
    if needed <= free:
        return None
    return (
        f"output '{out}' needs {format_bytes(needed)} (draws {format_bytes(output)}, checkpoint "
        f"{format_bytes(checkpoint)}) but {where} has {format_bytes(free)} free: free space, "
        "choose another --out, or lower --draws"
    )


def mount_point(path: str) -> str:
    """The mount point of the file system holding ``path`` (for the user's eyes)."""
    here = Path(os.path.abspath(path))
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return str(here)


def free_bytes(directory: str) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def disk_bytes(paths: list[str]) -> int:
    """Bytes the files and folders in ``paths`` occupy (missing ones count 0)."""
    total = 0
    for path in map(Path, paths):
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        total += sum(f.stat().st_blocks * 512 for f in files if f.is_file())
    return total


def check(out: str, output: int, checkpoint: int, freed: list[str]) -> None:
    """Rank 0: refuse the run when the output does not fit; ``freed`` are the files the run will
    delete first (``--overwrite``), whose space counts as free."""
    directory = os.path.dirname(os.path.abspath(out))
    free = free_bytes(directory) + disk_bytes(freed)
    refusal = shortfall(out, output, checkpoint, free, mount_point(directory))
    if refusal:
        raise UserError(refusal)
