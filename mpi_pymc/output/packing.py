"""One self-contained output file: pack a ``shards`` output, and say loudly when shards are gone.

The ``shards`` writer (plain h5py) leaves ``OUT`` holding *virtual datasets* over the ranks'
files in ``OUT.parts/``. HDF5 reads a virtual dataset whose source file is missing as its fill
value without a word, so ``OUT`` copied alone opens in ArviZ with every draw NaN. Two remedies:

* :func:`pack` turns every virtual dataset into a real one holding the same values, then removes
  ``OUT.parts/``: the file can be copied, renamed and archived alone. It writes a copy beside
  ``OUT`` and renames it over ``OUT`` (``os.replace``), so at every moment ``OUT`` is either the
  old shard-backed file with its shards or the new packed one.
* :func:`check_shards` raises :class:`MissingShards` (one line naming the missing files and what
  to do) for a file whose virtual datasets map shards that cannot be read.

Nothing here starts MPI: once the writers are done, rank 0 packs (:func:`pack_on_rank0`, given
the job's communicator) or ``python -m mpi_pymc pack`` does (:func:`pack_main`, one process,
which takes ``OUT.lock`` itself; the other callers hold it already).

``jobscript`` builds the CLI on login nodes without NumPy: h5py and NumPy load lazily.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import math
import os
import posixpath
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mpi_pymc.core.config import UserError

if TYPE_CHECKING:
    import h5py

# Above this many bytes of draws a finished run keeps its shards (and says so in its last line;
# `python -m mpi_pymc pack OUT` packs it on demand, without this limit). Packing is a local copy
# of every draw by rank 0 at the end of the job: measured 3.1-5.7 s/GB on a loaded 2-core VM
# (benchmarks/README.md, "packing a shards output"), so this bound keeps it to about 3 minutes,
# which a job sized to its walltime can spare (an interrupted pack loses nothing: the output
# stays shard-backed).
PACK_LIMIT_BYTES = 32 << 30
# Target size of one HDF5 chunk of a packed variable (one chain, some draws), as postprocessing
# uses for the variables it creates: few chunk-index entries, whole reads stay sequential.
CHUNK_BYTES = 4 << 20
# The values are copied in blocks of about this size: rank 0's memory stays bounded whatever the
# size of the output.
BLOCK_BYTES = 64 << 20
# Room for HDF5's own bytes in the packed copy beyond each variable's values, chunk index and
# header (the scales' back-reference lists rewritten, the virtual layouts' freed space).
METADATA_ALLOWANCE = 1 << 20
# Missing shard files named in a message before "and N more".
NAMED_MISSING = 4

_TMP_SUFFIX = ".tmp"
_TMP_INFIX = ".pack"
# Test hook: SIGKILL the packing process at one of these points ("copied": the packed copy is
# written but not renamed; "replaced": renamed over OUT, OUT.parts/ not removed yet).
_KILL_ENV = "MPI_PYMC_PACK_KILL_AT"


class MissingShards(UserError):
    """A shard-backed file whose shards are gone: read anyway, its draws would be NaN."""

    def __init__(self, path: str, missing: list[str], folders: list[str]):
        self.path, self.missing, self.folders = path, missing, folders
        super().__init__(_missing_message(path, missing, folders))


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` did: ``state`` is ``packed``, ``already`` (nothing virtual) or
    ``kept`` (the shards stay; ``reason`` says why)."""

    path: str
    state: str
    data_bytes: int = 0  # the values the virtual datasets map (copied when packed)
    file_bytes: int = 0  # the output's size on disk afterwards
    datasets: int = 0  # virtual datasets turned real
    shard_files: int = 0
    seconds: float = 0.0
    reason: str | None = None  # why the shards were kept
    left_in_place: tuple[str, ...] = ()  # shard folders still there (another file's, say)

    def line(self) -> str:
        """One line for the user."""
        from mpi_pymc.output.disk_space import format_bytes

        name = self.path
        if self.state == "already":
            return f"{name} is one self-contained file (nothing to pack)"
        if self.state == "kept":
            return (
                f"kept the shards: {name} reads its draws from {name}{_shard_suffix()}/ "
                f"({self.reason}); copy or move both together, or pack it later with "
                f"`python -m mpi_pymc pack {name}`"
            )
        kept = ""
        if self.left_in_place:
            kept = f"; did not remove {', '.join(self.left_in_place)}"
        return (
            f"packed {self.shard_files} shard file(s) into {name}: "
            f"{format_bytes(self.data_bytes)} in {self.seconds:.1f}s; it can be copied alone{kept}"
        )


def _shard_suffix() -> str:
    from mpi_pymc.output.layout import SHARD_DIR_SUFFIX

    return SHARD_DIR_SUFFIX


# --- reading what a file maps -----------------------------------------------------------------


def _virtual_datasets(f: h5py.File) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            found.append(name)

    f.visititems(visit)
    return sorted(found)


def _resolve(out: Path, source: str) -> Path:
    """Where HDF5 finds a virtual dataset's source file: a relative name is taken relative to
    the folder of the file holding the virtual dataset. HDF5 would also look under
    ``HDF5_VDS_PREFIX`` and in the working directory; those are not counted, since a file that
    finds its shards only from one working directory is not self-contained."""
    path = Path(source)
    return path if path.is_absolute() else out.parent / path


def _mapped(path: str | os.PathLike) -> dict[Path, tuple[str, set[str]]]:
    """Every source file the virtual datasets of ``path`` map: resolved path -> (the name as
    written in the file, the source datasets read from it)."""
    import h5py

    out = Path(path)
    files: dict[Path, tuple[str, set[str]]] = {}
    with h5py.File(out, "r") as f:
        for name in _virtual_datasets(f):
            for source in f[name].virtual_sources():
                if source.file_name == ".":  # a source inside the file itself
                    continue
                resolved = _resolve(out, source.file_name)
                files.setdefault(resolved, (source.file_name, set()))[1].add(source.dset_name)
    return files


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The files the virtual datasets of ``path`` read from (empty for a packed or mpio file)."""
    return sorted(_mapped(path))


def _readable(shard: Path, datasets: set[str]) -> bool:
    import h5py

    try:
        # Without HDF5's file lock: the shards of a running job are open for writing by its
        # ranks, and the lock would make a present shard look missing.
        with h5py.File(shard, "r", locking=False) as f:
            return all(isinstance(f.get(name), h5py.Dataset) for name in datasets)
    except OSError:
        return False


def _missing(mapped: dict[Path, tuple[str, set[str]]]) -> tuple[list[str], list[str]]:
    """(missing shard files, the shard folders their names start with, as written)."""
    missing, folders = [], set()
    for resolved, (written, datasets) in sorted(mapped.items()):
        if not _readable(resolved, datasets):
            missing.append(str(resolved))
            folders.add(_shard_folder(written))
    return missing, sorted(folders)


def _shard_folder(written: str) -> str:
    """The folder a shard's name starts in, as written (``OUT.parts`` for this project's)."""
    path = Path(written)
    if path.is_absolute() or len(path.parts) < 2:
        return str(path.parent)
    return path.parts[0]


def missing_shards(path: str | os.PathLike) -> list[str]:
    """The shard files that the virtual datasets of ``path`` map and that do not exist or cannot
    be read (missing, truncated, without the mapped dataset); empty when all are there."""
    return _missing(_mapped(path))[0]


def check_shards(path: str | os.PathLike) -> None:
    """Raise :class:`MissingShards` when ``path`` maps shards that cannot be read."""
    _check(path, _mapped(path))


def _check(path: str | os.PathLike, mapped: dict[Path, tuple[str, set[str]]]) -> None:
    missing, folders = _missing(mapped)
    if missing:
        raise MissingShards(os.fspath(path), missing, folders)


def _missing_message(path: str, missing: list[str], folders: list[str]) -> str:
    named = ", ".join(missing[:NAMED_MISSING])
    if len(missing) > NAMED_MISSING:
        named += f" and {len(missing) - NAMED_MISSING} more"
    suffix = _shard_suffix()
    folder = folders[0] if len(folders) == 1 else "{" + ",".join(folders) + "}"
    original = folder[: -len(suffix)] if len(folders) == 1 and folder.endswith(suffix) else "OUT"
    return (
        f"'{path}' maps its draws to {len(missing)} shard file(s) that are missing or "
        f"unreadable: {named} (plain readers such as arviz.from_netcdf show those draws as NaN); "
        f"copy {folder}/ next to {Path(path).name}, or pack the original with "
        f"`python -m mpi_pymc pack {original}` before copying it alone"
    )


def is_packed(path: str | os.PathLike) -> bool:
    """No virtual dataset: the file holds all its values (a packed or an mpio output)."""
    import h5py

    with h5py.File(path, "r") as f:
        return not _virtual_datasets(f)


def _partial(f: h5py.File) -> str | None:
    """Why a run may not be packed yet: a partial run resumes from its shards."""
    import numpy as np

    if "draws_completed" not in f.attrs or "posterior" not in f or "draw" not in f["posterior"]:
        return None
    completed = np.asarray(f.attrs["draws_completed"])
    draws = len(f["posterior"]["draw"])
    if completed.size and int(completed.min()) < draws:
        return (
            f"a partial run ({int(completed.min())} of {draws} draws in some chain): "
            "`run --resume` continues from its shards; pack it once it is complete"
        )
    return None


# --- packing ------------------------------------------------------------------------------------


def _chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """One chain wide (how the writers chunk and readers slice), as many draws as fit in
    ``CHUNK_BYTES``; trailing axes are cut only when one draw alone is larger."""
    chunks = [1, *shape[1:]]
    for axis in range(1, len(shape)):
        inner = itemsize * math.prod(chunks[axis + 1 :])
        chunks[axis] = max(1, min(shape[axis], CHUNK_BYTES // inner))
        if inner <= CHUNK_BYTES:
            break
    return tuple(chunks)


def _storage_options(dtype, shape: tuple[int, ...]) -> dict:
    if math.prod(shape) == 0:
        return {}
    options: dict = {"chunks": _chunks(shape, dtype.itemsize)}
    if dtype.kind in "biu":
        # Statistics (diverging, tree_depth, n_steps) are small integers in wide types: shuffle
        # and the cheapest deflate shrink them many times at little cost. Floating-point draws
        # stay uncompressed: their mantissas are noise, deflate saves little and would dominate
        # the packing time (measured in benchmarks/pack_cost.py). Both are netCDF4's own filters.
        options.update(compression="gzip", compression_opts=1, shuffle=True)
    return options


def _copy_values(source: h5py.Dataset, target: h5py.Dataset) -> None:
    """Copy in blocks of about ``BLOCK_BYTES``, aligned to the target's chunks."""
    shape = source.shape
    if source.size == 0:
        return
    row = source.dtype.itemsize * math.prod(shape[1:])  # one chain
    if len(shape) >= 2 and row > BLOCK_BYTES:
        draw = source.dtype.itemsize * math.prod(shape[2:])
        step = target.chunks[1] * max(1, BLOCK_BYTES // (draw * target.chunks[1]))
        for chain in range(shape[0]):
            for start in range(0, shape[1], step):
                target[chain, start : start + step] = source[chain, start : start + step]
        return
    rows = max(1, BLOCK_BYTES // max(row, 1))
    for start in range(0, shape[0], rows):
        target[start : start + rows] = source[start : start + rows]


def _make_real(source: h5py.Dataset, packed: h5py.File, name: str) -> None:
    """Replace the virtual dataset ``name`` of ``packed`` with a real one holding ``source``'s
    values, fill value, attributes and dimension scales."""
    virtual = packed[name]
    if virtual.is_scale:
        raise ValueError(f"{name} is a virtual dimension scale; mpi_pymc never writes one")
    scales = [list(virtual.dims[axis].values()) for axis in range(virtual.ndim)]
    # Detach first: the scales' back-references (REFERENCE_LIST) must not keep pointing at the
    # deleted dataset, which netCDF readers would follow.
    for axis, attached in enumerate(scales):
        for scale in attached:
            virtual.dims[axis].detach_scale(scale)
    del packed[name]
    group = packed[posixpath.dirname(name) or "/"]
    real = group.create_dataset(
        posixpath.basename(name),
        shape=source.shape,
        maxshape=source.maxshape,
        dtype=source.dtype,
        fillvalue=source.fillvalue,
        **_storage_options(source.dtype, source.shape),
    )
    for axis, attached in enumerate(scales):
        for scale in attached:
            real.dims[axis].attach_scale(scale)
    for key in source.attrs:
        if key == "DIMENSION_LIST":  # rebuilt by attach_scale, pointing at the same scales
            continue
        stored = source.attrs.get_id(key)
        real.attrs.create(key, source.attrs[key], shape=stored.shape, dtype=stored.dtype)
    _copy_values(source, real)


def _packed_bytes(dset: h5py.Dataset) -> int:
    """Disk bytes a packed variable may take at most: its values uncompressed, its chunks'
    index entries and its header (bounds from ``storage``)."""
    from mpi_pymc.output.layout import CHUNK_OVERHEAD, DATASET_OVERHEAD

    chunks = _storage_options(dset.dtype, dset.shape).get("chunks")
    count = math.prod(-(-n // c) for n, c in zip(dset.shape, chunks, strict=True)) if chunks else 1
    return dset.size * dset.dtype.itemsize + count * CHUNK_OVERHEAD + DATASET_OVERHEAD


def _reserve(path: Path, size: int) -> None:
    """Allocate the packed copy's disk space before HDF5 writes into it.

    A full disk or a quota then fails here, as a plain OSError, instead of inside HDF5's
    metadata cache: there a failed write is only reported while objects are freed, and the
    next call can crash the process (seen with HDF5 2.0.0). HDF5 cuts the file back to what it
    used when it closes it.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        # A file system that cannot reserve space: write without the reservation.
    finally:
        os.close(fd)


def _open_elsewhere(out: Path) -> bool:
    """Whether a reader holds ``out`` open, as far as HDF5's file locks tell (a reader that
    turned locking off is not seen). Packing under a reader that opened the file lazily (an
    ArviZ object in a notebook) would remove the shards its later reads need: NaN again."""
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # HDF5 readers hold LOCK_SH
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock
    return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _injected_kill(point: str) -> None:
    if os.environ.get(_KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _tmp_name(out: Path) -> Path:
    return out.with_name(f"{out.name}{_TMP_INFIX}{os.getpid()}{_TMP_SUFFIX}")


def _remove_stale_copies(out: Path) -> None:
    """Copies left by a pack that was killed before its rename (the caller holds OUT's lock,
    so no other pack of OUT is running)."""
    for stale in out.parent.glob(f"{out.name}{_TMP_INFIX}*{_TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def pack(path: str | os.PathLike, max_bytes: int | None = PACK_LIMIT_BYTES) -> PackResult:
    """Make ``path`` one self-contained file: every virtual dataset becomes a real one with the
    same values, then ``OUT.parts/`` is removed.

    The shards stay (state ``kept``) for a partial run (resume needs them), when the values
    exceed ``max_bytes`` (None: no limit) or when the packed copy would not fit in the free
    space beside ``path``. Raises :class:`MissingShards` when shards are missing (packing would
    write NaN for good) and OSError when writing fails, with ``path`` untouched. Crash-safe: a
    copy is written beside ``path``, fsynced and renamed over it; only then are the shards
    removed. Call it holding ``OUT.lock``, after every writer has closed the file.
    """
    import h5py

    from mpi_pymc.output.added_groups import SHARDS_ATTR
    from mpi_pymc.output.disk_space import format_bytes, free_bytes
    from mpi_pymc.output.layout import shard_dir

    t_start = time.perf_counter()
    out = Path(path)
    own_shards = shard_dir(str(out))
    _remove_stale_copies(out)
    with h5py.File(out, "r") as f:
        names = _virtual_datasets(f)
        partial = _partial(f)
        data_bytes = sum(f[name].size * f[name].dtype.itemsize for name in names)
        packed_bytes = sum(_packed_bytes(f[name]) for name in names) + METADATA_ALLOWANCE
    if not names:
        if own_shards.is_dir():  # a pack stopped between its rename and removing the shards
            shutil.rmtree(own_shards)
        return PackResult(str(path), "already", file_bytes=out.stat().st_size)
    if partial:
        return PackResult(str(path), "kept", data_bytes=data_bytes, reason=partial)
    mapped = _mapped(out)
    _check(path, mapped)
    if _open_elsewhere(out):
        reason = "it is open in another process (a notebook?); close it first"
        return PackResult(str(path), "kept", data_bytes=data_bytes, reason=reason)
    if max_bytes is not None and data_bytes > max_bytes:
        reason = f"{format_bytes(data_bytes)} of draws, above the {format_bytes(max_bytes)} limit"
        return PackResult(str(path), "kept", data_bytes=data_bytes, reason=reason)
    needed = out.stat().st_size + packed_bytes
    free = free_bytes(str(out.parent))
    if needed > free:
        reason = f"the packed copy needs {format_bytes(needed)}, {format_bytes(free)} are free"
        return PackResult(str(path), "kept", data_bytes=data_bytes, reason=reason)

    tmp = _tmp_name(out)
    try:
        shutil.copyfile(out, tmp)  # structure, coordinates, constant data, attributes
        _reserve(tmp, needed)
        with h5py.File(out, "r") as source, h5py.File(tmp, "r+") as packed:
            for name in names:
                _make_real(source[name], packed, name)
            for group in packed.values():
                if isinstance(group, h5py.Group) and SHARDS_ATTR in group.attrs:
                    del group.attrs[SHARDS_ATTR]  # its values are in the file now
        with h5py.File(tmp, "r") as packed:  # cheap guard before the old file goes
            if _virtual_datasets(packed):
                raise OSError(f"{tmp} still holds virtual datasets after packing")
        _fsync(tmp)  # the values are on disk before the rename makes them the output
        _injected_kill("copied")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(out.parent)
    _injected_kill("replaced")
    # Only OUT's own shard folder goes (with the shards of replaced groups, mapped no longer):
    # a renamed OUT maps another file's folder, which other copies may still map.
    shutil.rmtree(own_shards, ignore_errors=True)  # OUT is complete already; a failure is named
    folders = {_resolve(out, _shard_folder(name)) for name, _ in mapped.values()} | {own_shards}
    left = [f"{folder}/" for folder in sorted(folders - {out.parent}) if folder.is_dir()]
    return PackResult(
        str(path), "packed", data_bytes=data_bytes, file_bytes=out.stat().st_size,
        datasets=len(names), shard_files=len(mapped), seconds=time.perf_counter() - t_start,
        left_in_place=tuple(left),
    )  # fmt: skip


def pack_on_rank0(
    comm, path: str | os.PathLike, echo=print, max_bytes: int | None = PACK_LIMIT_BYTES
) -> PackResult:
    """Every rank of ``comm`` calls it once the writers have closed ``path`` (the run holds its
    lock): rank 0 packs, every rank returns rank 0's result, and rank 0 prints its line.

    What the run and ``postprocess`` call at their end. Missing shards are a failure every rank
    raises (:class:`~mpi_pymc.core.errors.AgreedError`); a failed write is not: the output is intact
    and shard-backed, so the result says ``kept`` and why (the run's draws are not lost because
    a copy of them did not fit).
    """
    from mpi_pymc.core.errors import on_every_rank, os_error_cause

    def work() -> PackResult | None:
        if comm.Get_rank() != 0:
            return None
        try:
            return pack(path, max_bytes)
        except OSError as exc:
            reason = f"packing failed: {os_error_cause(exc)}"
            return PackResult(os.fspath(path), "kept", reason=reason)

    result = comm.bcast(on_every_rank(comm, "packing the output", work), root=0)
    if comm.Get_rank() == 0 and result.state != "already":
        echo(result.line())
    return result


# --- command line -------------------------------------------------------------------------------


def add_parser(commands) -> None:
    """The ``pack`` subcommand."""
    parser = commands.add_parser(
        "pack",
        help="make a shards output one self-contained file (removes OUT.parts/)",
        description="Copy the draws a shards output (plain h5py) maps in OUT.parts/ into OUT "
        "itself, so OUT can be copied alone, then remove OUT.parts/. Crash-safe: OUT is "
        "replaced only once the packed copy is complete. Needs free space for the draws.",
    )
    parser.add_argument("path", metavar="OUT.h5", help="the run's output file")


def pack_main(args: argparse.Namespace, echo=print) -> int:
    """``python -m mpi_pymc pack OUT``: one process, no MPI; the exit code (0 packed or nothing
    to pack, 1 a write failed, 2 shards missing, a partial run, too little space, or OUT in
    use by a job)."""
    from mpi_pymc.core.errors import EXIT_FAILURE, EXIT_OK, EXIT_USER, os_error_cause
    from mpi_pymc.output import lock as output_lock

    def fail(message: str, code: int = EXIT_USER) -> int:
        print(f"mpi_pymc: error: {message}", file=sys.stderr, flush=True)
        return code

    path = args.path
    try:
        _check_readable(path)
        lock = output_lock.acquire(path, output_lock.stale_after_from())
    except UserError as exc:
        return fail(str(exc))
    try:
        if lock.broke:
            echo(f"note: {lock.broke}")
        result = pack(path, max_bytes=None)
    except UserError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"packing {path} failed, it is unchanged: {os_error_cause(exc)}", EXIT_FAILURE)
    finally:
        lock.release()
    if result.state == "kept":
        return fail(f"{path} not packed: {result.reason}")
    echo(result.line())
    return EXIT_OK


def _check_readable(path: str) -> None:
    import h5py

    if not os.path.exists(path):
        raise UserError(f"'{path}' does not exist: pass the --out file of a run")
    try:
        h5py.File(path, "r").close()
    except OSError as exc:
        raise UserError(f"'{path}' is not a readable HDF5 file: {exc}") from None
