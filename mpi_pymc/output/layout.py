"""The output file's layout, shared by every writer: which groups and variables it holds, with
what shapes, dims and fill values (:class:`Layout`), how big it will be, and the HDF5 calls
that create its groups as netCDF4/ArviZ expect (dimension scales, attributes)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
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
