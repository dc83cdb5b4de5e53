"""Groups added to a finished output (``log_likelihood``, ``posterior_predictive``) by the same
ranks that sampled it, with the writer the run used: collective writes into the file
(``mpio``) or new shards under ``OUT.parts/post-N/`` mapped into it (``shards``). A group is
marked incomplete until every rank has written it, and never touches the posterior."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np

from mpi_pymc.output.layout import DRAW_GROUPS, Layout, create_draw_group, shard_dir, write_attrs

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
