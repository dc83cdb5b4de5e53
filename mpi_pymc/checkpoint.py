"""Checkpoints: every chain's full sampler state, so a stopped run continues bit for bit.

The state of a chain (position, gradient, step size, mass matrix, adaptation state, PRNG key,
iteration) is a small pytree; after every chunk each rank's states are gathered to rank 0,
which writes ``OUT.ckpt`` atomically (write to a temporary file, fsync, rename). Chains are
stored by global chain id, so a resumed run may re-split them over any number of ranks.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from mpi_pymc.config import UserError

FORMAT_VERSION = 1


def checkpoint_path(out: str) -> str:
    return str(out) + ".ckpt"


@dataclass
class Checkpoint:
    leaves: list[np.ndarray]  # each (chains, ...), in global chain order
    meta: dict  # settings, fingerprint, root_seed, chains, draws_done, phase

    @property
    def draws_done(self) -> int:
        return int(self.meta["draws_done"])

    @property
    def iteration(self) -> int:
        return int(self.meta["iteration"])


def write_checkpoint(path: str, leaves: list[np.ndarray], meta: dict) -> None:
    """Write atomically: a reader sees the old checkpoint or the new one, never a torn file."""
    tmp = f"{path}.tmp{os.getpid()}"
    arrays = {f"leaf_{i:03d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    meta = {**meta, "format_version": FORMAT_VERSION, "leaves": len(leaves)}
    try:
        with open(tmp, "wb") as handle:
            arrays["meta"] = np.array(json.dumps(meta, default=str))
            np.savez(handle, **arrays)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A full disk leaves a torn file aside: remove it so it neither holds the space a
        # resume needs nor passes for a checkpoint; the previous checkpoint stays as it was.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_checkpoint(path: str) -> Checkpoint:
    if not os.path.exists(path):
        raise UserError(
            f"no checkpoint '{path}' to resume from (the run finished, or never completed a "
            "chunk): start it again with --overwrite"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            leaves = [np.array(data[f"leaf_{i:03d}"]) for i in range(int(meta["leaves"]))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise UserError(
            f"checkpoint '{path}' is corrupted ({type(exc).__name__}): it cannot be resumed; "
            "start the run again with --overwrite"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"checkpoint '{path}' has an unknown format version: start again")
    return Checkpoint(leaves=leaves, meta=meta)


# Settings added after checkpoints were first written, with the value older runs used: a
# checkpoint that lacks one ran with it, so it still resumes.
LATER_SETTINGS = {"adapt_group": 1}


def settings_differences(stored: dict, current: dict) -> list[str]:
    """Human-readable list of settings that changed between the checkpoint and this run."""
    stored = {**LATER_SETTINGS, **stored}
    return [
        f"{key}: checkpoint {stored.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]
