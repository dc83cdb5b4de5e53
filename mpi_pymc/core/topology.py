"""Ranks and devices: who am I, which node-local rank, which GPU(s) I own.

Everything here runs before JAX is imported, because JAX reads ``CUDA_VISIBLE_DEVICES``,
``JAX_PLATFORMS`` and ``XLA_FLAGS`` once, when its backend starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from mpi_pymc.core.config import UserError


@dataclass(frozen=True)
class Binding:
    host: str
    world_rank: int
    world_size: int
    local_rank: int
    local_size: int
    platform: str  # "gpu" or "cpu"
    devices: tuple[str, ...]  # CUDA device ids this rank owns (empty on CPU)
    cpu_threads: int
    cpus: tuple[int, ...] = ()  # cores this rank was pinned to by mpi_pymc (empty: not pinned)
    launcher_cpus: tuple[int, ...] = ()  # the affinity the launcher gave it
    # Known once JAX has started (driver.chains.record_devices): the JAX devices of the bound
    # platform this rank sees (GPUs, or JAX_NUM_CPU_DEVICES host devices) and how many of them
    # run its chains (all, unless it has fewer chains than devices).
    local_devices: int = 0
    chain_devices: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, without starting CUDA or JAX."""
    listed = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def assign_gpus(
    visible: list[str], local_rank: int, local_size: int, gpus_per_rank: int | None
) -> list[str]:
    """The GPU ids a node-local rank owns. Pure, so it is tested without GPUs.

    ``gpus_per_rank=None`` means one each when GPUs exist, CPU when none. A launcher that already
    restricted each task to its own GPUs (SLURM ``--gpus-per-task``) leaves exactly ``k`` visible.
    """
    if gpus_per_rank == 0 or not visible:
        if gpus_per_rank:
            raise UserError(
                f"--gpus-per-rank {gpus_per_rank} but no GPU is visible: "
                "drop the option to run on CPU"
            )
        return []
    k = gpus_per_rank or 1
    if len(visible) == k:
        return list(visible)
    if len(visible) < k * local_size:
        raise UserError(
            f"{local_size} ranks on this node x --gpus-per-rank {k} needs {k * local_size} GPUs "
            f"but {len(visible)} are visible: launch fewer ranks per node or lower --gpus-per-rank"
        )
    return visible[local_rank * k : (local_rank + 1) * k]


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask (a pinned rank's own cores)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cpu_threads_per_rank(local_size: int) -> int:
    """Cores this rank may use: its affinity mask, shared fairly with node-local peers."""
    cores = usable_cores()
    # A launcher that pinned each rank to its own cores leaves small disjoint masks; one that
    # did not leaves every rank the whole node, which we then divide.
    total = os.cpu_count() or cores
    if cores >= total and local_size > 1:
        return max(1, cores // local_size)
    return max(1, cores)


def cores_to_pin(allowed: list[int], total: int, local_rank: int, local_size: int) -> list[int]:
    """The cores a CPU rank should pin itself to, or [] to leave its affinity alone (pure).

    Only when the launcher left every rank the whole node: then rank ``r`` of ``n`` takes the
    ``r``-th equal share of the cores (ranks beyond the cores share them round-robin). Pinned,
    each rank's compute and JAX runtime threads stay on its own cores; unpinned, two ranks'
    threads migrate over both cores of this machine and each gradient took 1.11 ms instead of
    0.98 (benchmarks/contention.py).
    """
    if local_size <= 1 or len(allowed) < total:
        return []
    share = max(1, len(allowed) // local_size)
    start = (local_rank * share) % len(allowed)
    return sorted(allowed)[start : start + share]


def bind(comm, gpus_per_rank: int | None) -> Binding:
    """Decide and apply this rank's device binding; must run before JAX is imported."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    local_rank, local_size = local.Get_rank(), local.Get_size()
    local.Free()
    gpus = assign_gpus(visible_gpus(), local_rank, local_size, gpus_per_rank)
    threads = cpu_threads_per_rank(local_size)
    pinned: list[int] = []
    given = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not gpus and hasattr(os, "sched_setaffinity") and os.environ.get("MPI_PYMC_PIN") != "0":
        pinned = cores_to_pin(given, os.cpu_count() or 1, local_rank, local_size)
        if pinned:
            os.sched_setaffinity(0, pinned)
            threads = len(pinned)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        os.environ.setdefault("JAX_PLATFORMS", "cuda,cpu")
    else:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    # Ranks sharing a node must not each start a thread per core.
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags and not gpus:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
            f"intra_op_parallelism_threads={threads}"
        ).strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    return Binding(
        host=socket.gethostname(),
        world_rank=comm.Get_rank(),
        world_size=comm.Get_size(),
        local_rank=local_rank,
        local_size=local_size,
        platform="gpu" if gpus else "cpu",
        devices=tuple(gpus),
        cpu_threads=threads,
        cpus=tuple(pinned),
        launcher_cpus=tuple(given),
    )


@dataclass(frozen=True)
class ShardGroups:
    """``--data-shards S`` laid out over the ranks: a 2-D grid, chain groups x data shards.

    ``ranks_per_group`` ranks hold one chain group's ``S`` shards: 1 where every rank has ``S``
    devices (the shards are the rank's devices), ``S`` where every rank has one (rank
    ``r = g * S + s`` is shard ``s`` of chain group ``g``; the ranks of a shard group advance
    the same chains)."""

    shards: int
    ranks_per_group: int

    def chain_group_of(self, rank: int) -> int:
        return rank // self.ranks_per_group

    def shard_of(self, rank: int) -> int:
        """The rank's place in its shard group (0: the rank that writes the group's draws)."""
        return rank % self.ranks_per_group


def shard_groups(shards: int, world_size: int, local_devices: int) -> ShardGroups:
    """The layout of ``shards`` data shards over ``world_size`` ranks of ``local_devices``
    devices each; ``UserError`` (one line) for a layout that leaves a device or a rank idle."""
    if local_devices == shards:
        return ShardGroups(shards, 1)
    if local_devices == 1:
        if world_size % shards:
            raise UserError(
                f"--data-shards {shards} over ranks of one device each puts one shard on each "
                f"of {shards} ranks, and {shards} does not divide the {world_size} ranks: start "
                f"a multiple of {shards} ranks (or each rank with {shards} devices)"
            )
        return ShardGroups(shards, shards)
    raise UserError(
        f"--data-shards {shards} puts one shard on each of a rank's devices, and this rank has "
        f"{local_devices}: start each rank with {shards} (JAX_NUM_CPU_DEVICES={shards} or "
        f"--gpus-per-rank {shards}), or with one device each on a multiple of {shards} ranks"
    )
