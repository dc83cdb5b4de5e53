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
many leading draws of each chain are real."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import replace
from functools import partial

import h5py
import numpy as np

from mpi_pymc.output.layout import (
    Layout,
    _collectively,
    create_draw_group,
    create_static_groups,
    shard_dir,
    write_attrs,
    write_failure,
)


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
