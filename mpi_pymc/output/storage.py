"""One HDF5 output file in ArviZ's netCDF4 layout, written by every rank as it samples.

Two writers share one layout:

* ``mpio`` — with an MPI-enabled h5py every rank opens the file with ``driver="mpio"``; the
  structure is created collectively (same calls on every rank) and each rank writes its own
  ``chain`` slice with collective transfers. Chunks are one chain wide, so no two ranks ever
  touch the same HDF5 chunk.
* ``shards`` — with the plain h5py wheel each rank writes ``OUT.parts/rank{r}.h5`` holding its
  chains, and rank 0 writes ``OUT`` whose draw datasets are virtual datasets over the shards.

Both preallocate every dataset (fill value NaN) before the first draw, so after each flush the
file's metadata never changes again except fixed-size attributes: a job killed at any moment
leaves a file that opens and holds every flushed chunk. ``draws_completed`` (per chain) says how
many leading draws of each chain are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from mpi_pymc.core.errors import os_error_cause

DRAW_GROUPS = ("posterior", "sample_stats")
SHARD_DIR_SUFFIX = ".parts"

STAT_DTYPES = {
    "lp": "float",
    "diverging": "bool",
    "energy": "float",
    "step_size": "float",
    "tree_depth": "int64",
    "n_steps": "int64",
    "acceptance_rate": "float",
}


@dataclass
class Variable:
    name: str
    dims: tuple[str, ...]  # without the leading (chain, draw)
    shape: tuple[int, ...]
    dtype: str


@dataclass
class Layout:
    """What the file holds: groups, variables, coordinates. Identical on every rank."""

    chains: int
    draws: int
    chunk_draws: int
    coords: dict[str, np.ndarray]
    draw_groups: dict[str, list[Variable]]
    static_groups: dict[str, dict[str, tuple[np.ndarray, tuple[str, ...]]]] = field(
        default_factory=dict
    )


def layout_for(compiled, chains: int, draws: int, chunk_draws: int) -> Layout:
    float_name = compiled.float_dtype
    posterior = [
        Variable(v.name, v.dims, v.shape, float_name if v.dtype.startswith("float") else v.dtype)
        for v in compiled.posterior_vars
    ]
    stats = [
        Variable(name, (), (), float_name if kind == "float" else kind)
        for name, kind in STAT_DTYPES.items()
    ]
    static = {}
    if compiled.observed_data:
        static["observed_data"] = compiled.observed_data
    if compiled.constant_data:
        static["constant_data"] = compiled.constant_data
    return Layout(
        chains=chains,
        draws=draws,
        chunk_draws=min(chunk_draws, draws),
        coords=dict(compiled.coords),
        draw_groups={"posterior": posterior, "sample_stats": stats},
        static_groups=static,
    )


def shard_dir(path: str) -> Path:
    return Path(str(path) + SHARD_DIR_SUFFIX)


def remove_output(path: str) -> None:
    """Delete an output file and its shards (``--overwrite``)."""
    if os.path.lexists(path):
        os.remove(path)
    if shard_dir(path).is_dir():
        shutil.rmtree(shard_dir(path))


# HDF5's own bytes around the data, bounded from above on this layout's files (tested against
# real outputs): superblock and root attributes, each dataset's header and dimension-scale
# references, each allocated chunk's entry in its dataset's chunk index.
FILE_OVERHEAD = 64 * 1024
DATASET_OVERHEAD = 4 * 1024
CHUNK_OVERHEAD = 128
VIRTUAL_MAPPING_OVERHEAD = 512  # one (shard, variable) block of a virtual dataset


def output_bytes(layout: Layout, io: str, ranks: int, resume: bool = False) -> int:
    """Disk bytes the output takes once every dataset is allocated (all are, before the first
    draw). ``resume``: what a resumed run adds — a new shard segment, or nothing for mpio."""
    if resume and io == "mpio":
        return 0
    chunks_per_chain = -(-layout.draws // layout.chunk_draws)
    draw_vars = [v for variables in layout.draw_groups.values() for v in variables]
    data = chunk_entries = 0
    for var in draw_vars:
        values = layout.chunk_draws * int(np.prod(var.shape, dtype=np.int64))
        data += layout.chains * chunks_per_chain * values * np.dtype(var.dtype).itemsize
        chunk_entries += layout.chains * chunks_per_chain
    coords = sum(_coord_array(v).nbytes for v in layout.coords.values()) + 16 * layout.draws
    static = sum(
        np.asarray(value).nbytes + DATASET_OVERHEAD
        for variables in layout.static_groups.values()
        for value, _ in variables.values()
    )
    scales = len(layout.coords) + 2  # chain and draw
    per_file = FILE_OVERHEAD + (len(draw_vars) + scales) * (DATASET_OVERHEAD) + coords
    total = data + chunk_entries * CHUNK_OVERHEAD + static + per_file
    if io == "shards":  # one shard per rank, and the main file mapping them
        total += ranks * per_file + len(draw_vars) * ranks * VIRTUAL_MAPPING_OVERHEAD
    return int(total)


def _fill_value(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    return -1


def _early_dcpl():
    """Dataset creation properties: allocate all chunks now, so writes never touch metadata."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def _coord_array(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "OUS":
        return np.array([str(v) for v in values], dtype=h5py.string_dtype())
    return values


def _make_scales(group: h5py.Group, dims: dict[str, np.ndarray]) -> None:
    for dim, values in dims.items():
        values = _coord_array(values)
        # The draw axis can shrink to the draws taken (--until-ess): resizable.
        maxshape = (None,) if dim == "draw" else None
        dset = group.create_dataset(dim, data=values, maxshape=maxshape)
        dset.make_scale(dim)


def _attach(dset: h5py.Dataset, group: h5py.Group, dims: tuple[str, ...]) -> None:
    for axis, dim in enumerate(dims):
        dset.dims[axis].attach_scale(group[dim])


def _group_dims(layout: Layout, variables: list[Variable], chains: np.ndarray) -> dict:
    dims: dict[str, np.ndarray] = {"chain": chains, "draw": np.arange(layout.draws)}
    for var in variables:
        for dim in var.dims:
            dims.setdefault(dim, layout.coords[dim])
    return dims


def create_draw_group(
    f: h5py.File,
    group_name: str,
    layout: Layout,
    chains: np.ndarray,
    sources: dict[str, h5py.VirtualLayout] | None = None,
) -> None:
    """Create one (chain, draw, ...) group; ``sources`` makes its variables virtual."""
    variables = layout.draw_groups[group_name]
    group = f.create_group(group_name)
    _make_scales(group, _group_dims(layout, variables, chains))
    for var in variables:
        dtype = np.dtype(var.dtype)
        full_dims = ("chain", "draw", *var.dims)
        if sources is not None:
            dset = group.create_virtual_dataset(
                var.name, sources[var.name], fillvalue=_fill_value(dtype)
            )
        else:
            dset = group.create_dataset(
                var.name,
                shape=(len(chains), layout.draws, *var.shape),
                maxshape=(len(chains), None, *var.shape),
                dtype=dtype,
                chunks=(1, layout.chunk_draws, *var.shape),
                fillvalue=_fill_value(dtype),
                dcpl=_early_dcpl(),
            )
        _attach(dset, group, full_dims)


def create_static_groups(f: h5py.File, layout: Layout) -> None:
    for group_name, variables in layout.static_groups.items():
        group = f.create_group(group_name)
        dims: dict[str, np.ndarray] = {}
        for value, var_dims in variables.values():
            for axis, dim in enumerate(var_dims):
                if dim not in dims:
                    dims[dim] = layout.coords.get(dim, np.arange(np.shape(value)[axis]))
        _make_scales(group, dims)
        for name, (value, var_dims) in variables.items():
            data = np.asarray(value)
            if data.dtype.kind in "OUS":
                data = _coord_array(data)
            dset = group.create_dataset(name, data=data)
            _attach(dset, group, var_dims)


def _attr_value(value):
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value)
    ):
        return json.dumps(value, default=str)
    if value is None:
        return "null"
    return value


def write_attrs(obj, attrs: dict) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = _attr_value(value)


def write_failure(path, exc: OSError) -> OSError:
    """A failed write (disk full, quota, I/O error) as one line naming the file and the cause."""
    return OSError(f"cannot write '{path}': {os_error_cause(exc)}")


def _collectively(path, steps: list[Callable[[], None]]) -> None:
    """Run collective HDF5 steps; a rank whose step fails still joins the remaining ones, so no
    rank waits in a collective for it, and raises the first failure once they are done."""
    failure = None
    for step in steps:
        try:
            step()
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        raise write_failure(path, failure)


class _Writer:
    """Common interface: ``write_chunk`` local chains, ``mark_completed`` for all chains."""

    kind = ""

    def __init__(self, path: str, comm, layout: Layout, chain_group: range):
        self.path = path
        self.comm = comm
        self.layout = layout
        self.chain_group = chain_group

    def close(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """After an agreed failure (every rank calls it): close quietly what still closes, so
        no HDF5 object is left to fail noisily at exit; every flushed draw is on disk already."""
        with contextlib.suppress(Exception):
            self.close()

    def _datasets(self, f: h5py.File) -> dict[tuple[str, str], h5py.Dataset]:
        return {
            (g, v.name): f[g][v.name]
            for g, variables in self.layout.draw_groups.items()
            for v in variables
        }


class MpioWriter(_Writer):
    """All ranks share one file through MPI-IO; each writes its own chain slice collectively.

    Rank 0 lays out the structure first with the serial driver — coordinate labels are
    variable-length strings, which MPI-IO cannot write — then every rank opens the file with
    ``driver="mpio"``. All chunks are allocated at creation, so the parallel phase only moves
    draw data and rewrites the fixed-size ``draws_completed`` attribute.
    """

    kind = "mpio"

    def __init__(self, path, comm, layout, chain_group, root_attrs: dict, resume: bool = False):
        super().__init__(path, comm, layout, chain_group)
        error = None
        if comm.Get_rank() == 0 and not resume:
            try:
                with h5py.File(path, "w") as f:
                    all_chains = np.arange(layout.chains)
                    for group_name in layout.draw_groups:
                        create_draw_group(f, group_name, layout, all_chains)
                    create_static_groups(f, layout)
                    write_attrs(f, root_attrs)
                    f.attrs["draws_completed"] = np.zeros(layout.chains, dtype=np.int64)
                    f.attrs["io"] = self.kind
            except Exception as exc:  # shared so no rank waits for a file that never comes
                error = f"{type(exc).__name__}: {exc}"
        error = comm.bcast(error, root=0)
        if error is not None:
            raise OSError(f"rank 0 could not create {path}: {error}")
        self.file = h5py.File(path, "r+", driver="mpio", comm=comm)
        self._dsets = self._datasets(self.file)

    def read_local(self, group: str, name: str, draws: int | None = None) -> np.ndarray:
        """This rank's chains of one variable, the first ``draws`` draws (default all)."""
        return self.file[group][name][self.chain_group.start : self.chain_group.stop, :draws]

    def trim(self, draws: int) -> None:
        """Collective: the file keeps only the first ``draws`` draws of every chain."""
        for group_name, variables in self.layout.draw_groups.items():
            self.file[group_name]["draw"].resize((draws,))
            for var in variables:
                self.file[group_name][var.name].resize(draws, axis=1)
        self.file.flush()

    def write_chunk(self, draw_start: int, values: dict[tuple[str, str], np.ndarray]) -> None:
        lo, hi = self.chain_group.start, self.chain_group.stop

        def write(dset: h5py.Dataset, block: np.ndarray) -> None:
            with dset.collective:
                dset[lo:hi, draw_start : draw_start + block.shape[1]] = block

        _collectively(self.path, [partial(write, d, values[k]) for k, d in self._dsets.items()])

    def mark_completed(self, draws_completed: np.ndarray) -> None:
        def set_completed() -> None:
            # Attributes are metadata: every rank writes the same value (a collective operation).
            self.file.attrs["draws_completed"] = np.asarray(draws_completed, dtype=np.int64)

        _collectively(self.path, [self.file.flush, set_completed, self.file.flush])

    def set_attrs(self, attrs: dict) -> None:
        write_attrs(self.file, attrs)

    def close(self) -> None:
        self.file.close()


class ShardWriter(_Writer):
    """Each rank writes its chains to a shard; rank 0's main file maps them as virtual datasets.

    Shards live in ``OUT.parts/sNNN/rankRRRRR.h5``, one *segment* ``sNNN`` per start of the
    run: a resumed run (possibly on another number of ranks) writes a new segment from the draw
    it resumes at, and the main file is rebuilt — written aside, then renamed over ``OUT`` — to
    map each (segment, chain group) block of draws. Readers only ever see a complete main file.
    """

    kind = "shards"

    def __init__(
        self, path, comm, layout, chain_group, root_attrs: dict, resume: bool = False,
        draw_start: int = 0,
    ):  # fmt: skip
        super().__init__(path, comm, layout, chain_group)
        self.rank = comm.Get_rank()
        self.root_attrs = root_attrs
        groups = comm.allgather((chain_group.start, chain_group.stop))
        segments, error = None, None
        if self.rank == 0:
            try:
                segments = self._previous_segments(path) if resume else []
                segments = [s for s in segments if s["draw_start"] < draw_start]
                name = f"s{len(segments):03d}"
                segments.append({"dir": name, "draw_start": draw_start, "groups": groups})
                (shard_dir(path) / name).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        segments, error = comm.bcast((segments, error), root=0)
        if error is not None:
            raise OSError(f"rank 0 could not prepare the shards of {path}: {error}")
        self.segments = segments
        own = shard_dir(path) / segments[-1]["dir"] / f"rank{self.rank:05d}.h5"
        self.shard = h5py.File(own, "w")
        chains = np.arange(chain_group.start, chain_group.stop)
        for group_name in layout.draw_groups:
            create_draw_group(self.shard, group_name, layout, chains)
        self.shard.attrs["draws_completed"] = np.full(len(chain_group), draw_start, np.int64)
        self.shard.attrs["first_chain"] = chain_group.start
        self.shard.attrs["draw_start"] = draw_start
        self.shard.flush()
        self._dsets = self._datasets(self.shard)
        comm.Barrier()  # every shard exists before the main file points at them
        self.main = None
        error = None
        if self.rank == 0:
            try:
                self._write_main(root_attrs, draw_start)
                self.main = h5py.File(path, "r+")
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        error = comm.bcast(error, root=0)
        if error is not None:
            raise OSError(f"rank 0 could not write {path}: {error}")

    @staticmethod
    def _previous_segments(path: str) -> list[dict]:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["shard_segments"])

    def _write_main(self, root_attrs: dict, draw_start: int, draws: int | None = None) -> None:
        """Write ``OUT`` mapping the shards' first ``draws`` draws (default all)."""
        layout = self.layout
        view = replace(layout, draws=layout.draws if draws is None else draws)
        stops = [s["draw_start"] for s in self.segments[1:]] + [layout.draws]
        tmp = f"{self.path}.tmp{os.getpid()}"
        with h5py.File(tmp, "w") as main:
            for group_name, variables in layout.draw_groups.items():
                sources = {}
                for var in variables:
                    vlayout = h5py.VirtualLayout(
                        shape=(layout.chains, view.draws, *var.shape), dtype=np.dtype(var.dtype)
                    )
                    for segment, stop in zip(self.segments, stops, strict=True):
                        start, stop = segment["draw_start"], min(stop, view.draws)
                        for rank, (lo, hi) in enumerate(segment["groups"]):
                            source = h5py.VirtualSource(
                                f"{shard_dir(self.path).name}/{segment['dir']}/rank{rank:05d}.h5",
                                f"{group_name}/{var.name}",
                                shape=(hi - lo, layout.draws, *var.shape),
                            )
                            vlayout[lo:hi, start:stop] = source[:, start:stop]
                    sources[var.name] = vlayout
                create_draw_group(main, group_name, view, np.arange(layout.chains), sources)
            create_static_groups(main, layout)
            write_attrs(main, root_attrs)
            main.attrs["draws_completed"] = np.full(layout.chains, draw_start, dtype=np.int64)
            main.attrs["io"] = self.kind
            main.attrs["shard_segments"] = json.dumps(self.segments)
        os.replace(tmp, self.path)

    def read_local(self, group: str, name: str, draws: int | None = None) -> np.ndarray:
        """This rank's chains of one variable, the first ``draws`` draws (default all),
        assembled from every segment.

        Earlier segments (before a resume) may have split the chains differently; their shards
        are closed by now and are read directly, never through the main file rank 0 holds.
        """
        lo, hi = self.chain_group.start, self.chain_group.stop
        wanted = self.layout.draws if draws is None else min(draws, self.layout.draws)
        # Only the draws asked for: the shard is allocated for --draws, which an --until-ess
        # run sets as a cap far above the draws its goal checks read.
        out = np.array(self.shard[group][name][:, :wanted])
        stops = [s["draw_start"] for s in self.segments[1:]] + [self.layout.draws]
        for segment, stop in zip(self.segments[:-1], stops[:-1], strict=True):
            start, stop = segment["draw_start"], min(stop, wanted)
            if start >= stop:
                continue
            for rank, (g_lo, g_hi) in enumerate(segment["groups"]):
                a, b = max(lo, g_lo), min(hi, g_hi)
                if a >= b:
                    continue
                path = shard_dir(self.path) / segment["dir"] / f"rank{rank:05d}.h5"
                with h5py.File(path, "r") as old:
                    out[a - lo : b - lo, start:stop] = old[group][name][
                        a - g_lo : b - g_lo, start:stop
                    ]
        return out

    def trim(self, draws: int) -> None:
        """Collective: the main file maps only the first ``draws`` draws of every chain (the
        shards keep their size; rank 0 rewrites the main file's virtual datasets)."""
        error = None
        if self.main is not None:
            try:
                completed = np.asarray(self.main.attrs["draws_completed"])
                self.main.close()
                self._write_main(self.root_attrs, draws, draws)
                self.main = h5py.File(self.path, "r+")
                self.main.attrs["draws_completed"] = completed
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        error = self.comm.bcast(error, root=0)
        if error is not None:
            raise OSError(f"rank 0 could not rewrite {self.path}: {error}")

    def write_chunk(self, draw_start: int, values: dict[tuple[str, str], np.ndarray]) -> None:
        try:
            for key, dset in self._dsets.items():
                block = values[key]
                dset[:, draw_start : draw_start + block.shape[1]] = block
            self.shard.flush()
        except OSError as exc:
            raise write_failure(self.shard.filename, exc) from None

    def mark_completed(self, draws_completed: np.ndarray) -> None:
        lo, hi = self.chain_group.start, self.chain_group.stop
        try:
            self.shard.attrs["draws_completed"] = np.asarray(draws_completed[lo:hi], np.int64)
            self.shard.flush()
        except OSError as exc:
            raise write_failure(self.shard.filename, exc) from None
        if self.main is not None:
            try:
                self.main.attrs["draws_completed"] = np.asarray(draws_completed, dtype=np.int64)
                self.main.flush()
            except OSError as exc:
                raise write_failure(self.path, exc) from None

    def set_attrs(self, attrs: dict) -> None:
        if self.main is not None:
            write_attrs(self.main, attrs)
            self.main.flush()

    def close(self) -> None:
        try:
            self.shard.close()
        finally:
            if self.main is not None:
                self.main.close()


def mpio_available() -> bool:
    return bool(h5py.get_config().mpi)


def choose_io(requested: str) -> str:
    if requested == "auto":
        return "mpio" if mpio_available() else "shards"
    return requested


def open_writer(
    io: str, path: str, comm, layout: Layout, chain_group: range, root_attrs: dict,
    resume: bool = False, draw_start: int = 0,
):  # fmt: skip
    if io == "mpio":
        return MpioWriter(path, comm, layout, chain_group, root_attrs, resume=resume)
    return ShardWriter(
        path, comm, layout, chain_group, root_attrs, resume=resume, draw_start=draw_start
    )


# --- groups added to a finished file (``postprocess``) --------------------------------------
#
# A group is created with ``mpi_pymc_complete = 0`` and set to 1 once every rank has written
# its chains, so a pass killed half-way leaves a group that says so (a later pass replaces it)
# and never touches the posterior.

COMPLETE_ATTR = "mpi_pymc_complete"
SHARDS_ATTR = "mpi_pymc_shards"  # shards writer: the OUT.parts folder holding the group's data
ADDED_SHARDS_PREFIX = "post-"


def added_group_states(path: str) -> dict[str, bool]:
    """Every draw group of ``path`` besides the sampler's, and whether it is complete."""
    with h5py.File(path, "r") as f:
        return {
            name: bool(f[name].attrs.get(COMPLETE_ATTR, 1))
            for name in f
            if isinstance(f[name], h5py.Group) and "chain" in f[name] and name not in DRAW_GROUPS
        }


def _create_added_groups(
    f: h5py.File, layout: Layout, chains: np.ndarray, draw_values: np.ndarray, group_attrs: dict,
    sources: dict[str, dict[str, h5py.VirtualLayout]] | None = None,
) -> None:  # fmt: skip
    for group_name in layout.draw_groups:
        if group_name in f:
            del f[group_name]
        create_draw_group(
            f, group_name, layout, chains, None if sources is None else sources[group_name]
        )
        f[group_name]["draw"][...] = draw_values  # draw labels of the posterior (after --thin)
        write_attrs(f[group_name], group_attrs)
        f[group_name].attrs[COMPLETE_ATTR] = 0


def _rank0_then_share(comm, work, what: str):
    """Run ``work`` on rank 0; every rank gets its result or raises its OSError."""
    result, error = None, None
    if comm.Get_rank() == 0:
        try:
            result = work()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
    result, error = comm.bcast((result, error), root=0)
    if error is not None:
        raise OSError(f"rank 0 could not {what}: {error}")
    return result


class MpioGroupWriter:
    """New draw groups in a finished ``mpio`` file, written in place by every rank.

    Rank 0 lays the groups out with the serial driver (replacing same-named groups), then all
    ranks open the file with ``driver="mpio"``. Transfers are independent, not collective:
    ranks may hold different numbers of blocks, and each writes only its own one-chain chunks.
    """

    kind = "mpio"

    def __init__(self, path, comm, layout: Layout, chain_group: range, draw_values, attrs: dict):
        self.path, self.comm = path, comm

        def prepare() -> None:
            with h5py.File(path, "r+") as f:
                chains = np.arange(layout.chains)
                _create_added_groups(f, layout, chains, draw_values, attrs)

        _rank0_then_share(comm, prepare, f"add groups to {path}")
        self.groups = list(layout.draw_groups)
        self.file = h5py.File(path, "r+", driver="mpio", comm=comm)

    def read(self, group: str, name: str, chain: int, draws: slice) -> np.ndarray:
        return self.file[group][name][chain, draws]

    def write(self, group: str, name: str, chain: int, draw_start: int, block) -> None:
        self.file[group][name][chain, draw_start : draw_start + len(block)] = block

    def finish(self) -> None:
        """Collective: close, then rank 0 marks the groups complete."""
        self.file.close()

        def mark() -> None:
            with h5py.File(self.path, "r+") as f:
                for name in self.groups:
                    f[name].attrs[COMPLETE_ATTR] = 1

        _rank0_then_share(self.comm, mark, f"mark the new groups of {self.path} complete")


class ShardGroupWriter:
    """New draw groups of a ``shards`` file: each rank writes its chains to a shard in a fresh
    ``OUT.parts/post-NNN/`` folder; at the end rank 0 rebuilds the main file (a copy, renamed
    over ``OUT``) with virtual datasets over them. Until that rename ``OUT`` is untouched."""

    kind = "shards"

    def __init__(self, path, comm, layout: Layout, chain_group: range, draw_values, attrs: dict):
        self.path, self.comm, self.layout = path, comm, layout
        self.chain_group, self.draw_values, self.attrs = chain_group, draw_values, attrs
        self.groups = comm.allgather((chain_group.start, chain_group.stop))

        def new_folder() -> str:
            taken = {p.name for p in shard_dir(path).glob(f"{ADDED_SHARDS_PREFIX}*")}
            number = next(n for n in range(len(taken) + 1) if _post_dir(n) not in taken)
            (shard_dir(path) / _post_dir(number)).mkdir(parents=True)
            return _post_dir(number)

        self.folder = _rank0_then_share(comm, new_folder, f"prepare the shards of {path}")
        own = shard_dir(path) / self.folder / f"rank{comm.Get_rank():05d}.h5"
        self.shard = h5py.File(own, "w")
        chains = np.arange(chain_group.start, chain_group.stop)
        _create_added_groups(self.shard, layout, chains, draw_values, attrs)
        self.main = h5py.File(path, "r")  # the posterior, read through its virtual datasets

    def read(self, group: str, name: str, chain: int, draws: slice) -> np.ndarray:
        return self.main[group][name][chain, draws]

    def write(self, group: str, name: str, chain: int, draw_start: int, block) -> None:
        row = chain - self.chain_group.start
        self.shard[group][name][row, draw_start : draw_start + len(block)] = block

    def finish(self) -> None:
        """Collective: close the shards, then rank 0 maps them into ``OUT``."""
        self.shard.close()
        self.main.close()
        self.comm.Barrier()  # every shard is complete and no rank holds OUT open
        _rank0_then_share(self.comm, self._map_into_main, f"rewrite {self.path}")

    def _map_into_main(self) -> None:
        layout, n_draws = self.layout, len(self.draw_values)
        sources: dict[str, dict[str, h5py.VirtualLayout]] = {}
        for group_name, variables in layout.draw_groups.items():
            sources[group_name] = {}
            for var in variables:
                shape = (layout.chains, n_draws, *var.shape)
                vlayout = h5py.VirtualLayout(shape=shape, dtype=np.dtype(var.dtype))
                for rank, (lo, hi) in enumerate(self.groups):
                    vlayout[lo:hi] = h5py.VirtualSource(
                        f"{shard_dir(self.path).name}/{self.folder}/rank{rank:05d}.h5",
                        f"{group_name}/{var.name}",
                        shape=(hi - lo, n_draws, *var.shape),
                    )
                sources[group_name][var.name] = vlayout
        tmp = f"{self.path}.tmp{os.getpid()}"
        shutil.copyfile(self.path, tmp)
        try:
            with h5py.File(tmp, "r+") as main:
                chains = np.arange(layout.chains)
                _create_added_groups(main, layout, chains, self.draw_values, self.attrs, sources)
                for group_name in layout.draw_groups:
                    main[group_name].attrs[SHARDS_ATTR] = self.folder
                    main[group_name].attrs[COMPLETE_ATTR] = 1
                in_use = {
                    main[g].attrs.get(SHARDS_ATTR) for g in main if SHARDS_ATTR in main[g].attrs
                }
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        for folder in shard_dir(self.path).glob(f"{ADDED_SHARDS_PREFIX}*"):
            if folder.name not in in_use:  # replaced groups, or a pass killed before the rename
                shutil.rmtree(folder)


def _post_dir(number: int) -> str:
    return f"{ADDED_SHARDS_PREFIX}{number:03d}"


def open_group_writer(
    io: str, path: str, comm, layout: Layout, chain_group: range, draw_values, attrs: dict
):  # fmt: skip
    """The writer for new draw groups of a finished file; ``io`` is the file's own writer."""
    cls = MpioGroupWriter if io == "mpio" else ShardGroupWriter
    return cls(path, comm, layout, chain_group, draw_values, attrs)
