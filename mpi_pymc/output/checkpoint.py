"""Checkpoints: every chain's full sampler state, so a stopped run continues bit for bit.

The state of a chain (position, gradient, step size, mass matrix, adaptation state, PRNG key,
iteration) is a small pytree. After every chunk each rank writes its own chains' states to a
part file of ``OUT.ckpt.d/`` (atomically: temporary file, fsync, rename), and once every rank
has, rank 0 installs a manifest, ``OUT.ckpt``, naming the parts with their SHA-256: rank 0
never holds more than its own chains' state, however many ranks there are. The previous
manifest is kept as ``OUT.ckpt.prev`` with its parts, so a checkpoint torn by a crash (a part
missing or not matching its hash, a manifest cut short) is detected when resuming and the
previous one is used instead. Chains are stored by global chain id, so a resumed run may
re-split them over any number of ranks; each rank then reads only the parts holding its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mpi_pymc.core.config import UserError

FORMAT_VERSION = 2  # 1: one file with every chain's leaves (still read)


def checkpoint_path(out: str) -> str:
    """The manifest of the latest checkpoint of output ``out``."""
    return str(out) + ".ckpt"


def previous_path(path: str) -> str:
    return path + ".prev"


def parts_dir(path: str) -> str:
    """The folder of the part files, shared by the latest manifest ``path`` and the previous
    one (``previous_path(path)``)."""
    return path.removesuffix(".prev") + ".d"


def checkpoint_files(path: str) -> list[str]:
    """Everything a checkpoint ``path`` occupies (what --overwrite and a finished run remove)."""
    return [path, previous_path(path), parts_dir(path)]


@dataclass
class Checkpoint:
    leaves: list[np.ndarray]  # each (len(chains), ...): the state of the global chains `chains`
    meta: dict  # settings, fingerprint, root_seed, chains, draws_done, iteration
    chains: range
    fallback: str | None = None  # why the latest checkpoint was passed over, if it was

    @property
    def draws_done(self) -> int:
        return int(self.meta["draws_done"])

    @property
    def iteration(self) -> int:
        return int(self.meta["iteration"])


def _atomic_write(path: str, payload: bytes) -> None:
    """A reader sees the old file or the new one, never a torn one; a failed write (a full
    disk) leaves nothing aside, neither holding the space a resume needs nor passing for a
    checkpoint."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(path)


def _fsync_directory(path: str) -> None:
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_part(path: str, label: str, chains: range, leaves: list[np.ndarray]) -> dict:
    """Write this rank's chains' state as a part of checkpoint ``label``; returns its record
    for the manifest."""
    os.makedirs(parts_dir(path), exist_ok=True)
    name = f"{label}.c{chains.start}-{chains.stop}.npz"
    payload = _npz({f"leaf_{i:03d}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    _atomic_write(os.path.join(parts_dir(path), name), payload)
    digest = hashlib.sha256(payload).hexdigest()
    return {"file": name, "start": chains.start, "stop": chains.stop, "sha256": digest}


def write_manifest(path: str, meta: dict, parts: list[dict]) -> None:
    """Install the manifest of a checkpoint whose parts are all written (rank 0): the latest
    becomes the previous one, and parts neither manifest names are removed."""
    meta = {**meta, "format_version": FORMAT_VERSION, "parts": parts}
    payload = _npz({"meta": np.array(json.dumps(meta, default=str))})
    if os.path.exists(path):
        os.replace(path, previous_path(path))
    _atomic_write(path, payload)
    keep = {p["file"] for p in parts}
    try:
        keep |= {p["file"] for p in _read_meta(previous_path(path)).get("parts", [])}
    except (UserError, OSError):
        pass
    for name in os.listdir(parts_dir(path)):
        if name not in keep and ".tmp" not in name:
            os.remove(os.path.join(parts_dir(path), name))


def _read_meta(path: str) -> dict:
    if not os.path.exists(path):
        raise UserError(f"no checkpoint '{path}'")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise UserError(f"checkpoint '{path}' is corrupted ({type(exc).__name__})") from None
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise UserError(f"checkpoint '{path}' has an unknown format version: start again")
    return meta


def candidates(path: str) -> list[tuple[str, dict | str]]:
    """The latest and the previous checkpoint's manifest (or why each cannot be read)."""
    if not os.path.exists(path) and not os.path.exists(previous_path(path)):
        raise UserError(
            f"no checkpoint '{path}' to resume from (the run finished, or never completed a "
            "chunk): start it again with --overwrite"
        )
    found: list[tuple[str, dict | str]] = []
    for where in (path, previous_path(path)):
        try:
            found.append((where, _read_meta(where)))
        except UserError as exc:
            found.append((where, str(exc)))
    return found


def _parts_for(meta: dict, chains: range) -> list[dict]:
    return [p for p in meta["parts"] if p["start"] < chains.stop and chains.start < p["stop"]]


def verify(path: str, meta: dict, chains: range) -> str | None:
    """Why the parts holding ``chains`` cannot be trusted (None: they can)."""
    if meta.get("format_version") == 1:
        return None  # its leaves are in the manifest itself, read whole
    covered = set()
    for part in _parts_for(meta, chains):
        file = os.path.join(parts_dir(path), part["file"])
        try:
            with open(file, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:
            return f"part {part['file']} is missing"
        if digest != part["sha256"]:
            return f"part {part['file']} is torn (its SHA-256 does not match)"
        covered |= set(range(part["start"], part["stop"]))
    if not set(chains) <= covered:
        return f"chains {min(set(chains) - covered)}... are in no part"
    return None


def load(path: str, meta: dict, chains: range) -> Checkpoint:
    """The state of the global chains ``chains`` from a verified checkpoint."""
    if meta.get("format_version") == 1:
        with np.load(path, allow_pickle=False) as data:
            whole = [np.array(data[f"leaf_{i:03d}"]) for i in range(int(meta["leaves"]))]
        return Checkpoint([leaf[chains.start : chains.stop] for leaf in whole], meta, chains)
    pieces: list[list[np.ndarray]] = []
    for part in sorted(_parts_for(meta, chains), key=lambda p: p["start"]):
        with np.load(os.path.join(parts_dir(path), part["file"]), allow_pickle=False) as data:
            lo, hi = max(chains.start, part["start"]), min(chains.stop, part["stop"])
            count = len(data.files)
            pieces.append(
                [
                    data[f"leaf_{i:03d}"][lo - part["start"] : hi - part["start"]]
                    for i in range(count)
                ]
            )
    leaves = [np.concatenate(parts) for parts in zip(*pieces, strict=True)]
    return Checkpoint(leaves, meta, chains)


def read_checkpoint(path: str, chains: range | None = None) -> Checkpoint:
    """The latest good checkpoint, whole or for ``chains`` (one process; a run's ranks go
    through :func:`first_intact` with a verdict they agree on)."""

    def wanted(meta: dict) -> range:
        return range(int(meta["chains"])) if chains is None else chains

    return first_intact(path, candidates(path), wanted)


def first_intact(
    path: str,
    manifests: list,
    wanted: Callable[[dict], range],
    verdict: Callable[[str | None], str | None] = lambda problem: problem,
) -> Checkpoint:
    """The first of ``manifests`` (:func:`candidates`: latest first) whose parts hold the
    chains ``wanted(meta)`` intact, loaded; its ``fallback`` says why a later one was passed
    over (None when it is the latest). ``verdict`` turns this process's finding (None: intact)
    into the one acted on: a run's ranks gather theirs, so one rank's damaged part is every
    rank's reason to fall back.

    Raises UserError naming every problem when no checkpoint is intact.
    """
    problems: list[str] = []
    for where, meta in manifests:
        if isinstance(meta, str):
            problems.append(meta)
            continue
        chains = wanted(meta)
        problem = verdict(verify(where, meta, chains))
        if problem is None:
            ckpt = load(where, meta, chains)
            ckpt.fallback = "; ".join(problems) or None
            return ckpt
        problems.append(f"checkpoint '{where}': {problem}")
    raise UserError(corrupted(path, problems))


def corrupted(path: str, problems: list[str]) -> str:
    return (
        f"checkpoint '{path}' is corrupted and so is the previous one ({'; '.join(problems)}): "
        "it cannot be resumed; start the run again with --overwrite"
    )


def remove_checkpoint(path: str) -> None:
    for where in checkpoint_files(path):
        if os.path.isdir(where):
            shutil.rmtree(where, ignore_errors=True)
        elif os.path.exists(where):
            os.remove(where)


# Settings added after checkpoints were first written, with the value older runs used: a
# checkpoint that lacks one ran with it, so it still resumes.
LATER_SETTINGS = {"adapt_group": 1, "data_shards": 1, "data_row_dim": None}


def settings_differences(stored: dict, current: dict) -> list[str]:
    """Human-readable list of settings that changed between the checkpoint and this run."""
    stored, current = {**LATER_SETTINGS, **stored}, {**LATER_SETTINGS, **current}
    return [
        f"{key}: checkpoint {stored.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]
