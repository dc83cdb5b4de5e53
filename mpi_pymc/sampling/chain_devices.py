"""A rank's chains over its local JAX devices: every device a rank binds runs chains.

``--gpus-per-rank k`` (or ``JAX_NUM_CPU_DEVICES=k`` on a CPU rank) gives a rank k devices of one
platform. Its chains are split over ``min(k, chains)`` of them, with no collective inside the
sampling loop (each chain is independent; an adaptation group stays on one device):

- vectorized: one program over a 1-D mesh of the devices. ``shard_map`` splits the chain axis so
  each device ``vmap``-s its own block, exactly the program one device runs for that many
  chains. (A plain ``jit`` with a sharded batch axis would let XLA partition NUTS's
  ``while_loop``, whose condition reads every chain, into a cross-device reduction at every
  step; ``pmap`` is in maintenance mode.)
- sequential: chain ``i`` of the rank runs on device ``i % d``, each chain its own call as on one
  device. Calls are dispatched asynchronously, so the devices run their chains at the same time;
  each device runs the same program, compiled once per device.

Chain ``c``'s draws do not depend on the device count when each chain is its own program
(sequential, the CPU default: bit-identical on 1, 2 or 4 devices, as across ranks). Vectorized
chains do in the last bits: they share XLA's batched kernels, whose rounding may depend on the
batch size (a logistic regression's ``X @ beta`` for 2 chains and for 4 differs, on one device
too, and so across ranks), and XLA compiles a block under a multi-device ``shard_map`` with
other rounding than the one-device program (1.7e-9 apart after 60 NUTS iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mpi_pymc.core.config import UserError
from mpi_pymc.model.data_parallel import shard_map

__all__ = ["CHAIN_AXIS", "ChainPlacement", "pad_chains", "place_chains", "shard_chains"]

CHAIN_AXIS = "chain_devices"  # the mesh axis the chains are split over (not GROUP_AXIS)


@dataclass(frozen=True)
class ChainPlacement:
    """Which of a rank's devices run its ``chains``, and how many chain slots each holds."""

    devices: tuple  # the JAX devices that run chains (the first ``used`` of the rank's)
    chains: int
    per_device: int  # vectorized: chain slots per device, dummies included

    @property
    def used(self) -> int:
        return len(self.devices)

    @property
    def padded(self) -> int:
        """Vectorized: the chain axis length the program runs (``chains`` plus dummies)."""
        return self.per_device * self.used

    def device_of(self, chain_index: int):
        """Sequential: the device that runs the rank's ``chain_index``-th chain (round-robin)."""
        return self.devices[chain_index % self.used]

    def mesh(self) -> Mesh:
        return Mesh(np.asarray(self.devices), (CHAIN_AXIS,))

    def chain_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh(), PartitionSpec(CHAIN_AXIS))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh(), PartitionSpec())


def place_chains(chains: int, devices, vectorized: bool, group_size: int = 1) -> ChainPlacement:
    """Split ``chains`` over ``devices``; an adaptation group (``group_size``) is indivisible.

    A rank with fewer chains (groups) than devices uses as many devices as it has chains
    (groups). Vectorized chains that do not divide evenly are padded with dummy chains (copies
    of the rank's last chain, dropped from the results), so every device runs the same shape in
    one program: the devices run side by side, so the dummies cost no wall time on the devices
    that would otherwise wait for the fuller ones. (5 chains on 4 devices: 2, 2 and 1 + a dummy
    on 3 devices; no device runs dummies only.) Adaptation groups are not padded (a dummy
    would join a group's pooled adaptation): refused when they do not divide evenly.
    """
    devices = tuple(devices)
    units = max(1, chains // group_size)
    used = max(1, min(len(devices), units))
    if group_size > 1 and units % used:
        raise UserError(
            f"--adapt-group {group_size} must divide the chains on each of a rank's {used} "
            f"devices ({chains} chains per rank gives {chains / used:g} per device): pass "
            f"--chains-per-rank a multiple of {used * group_size}"
        )
    if not vectorized:
        return ChainPlacement(devices[:used], chains, 1)
    # 5 chains on 4 devices: 2 per device on 3 devices (one dummy), not 4 with a device of
    # dummies only.
    per_device = math.ceil(units / used)
    used = math.ceil(units / per_device)
    return ChainPlacement(devices[:used], chains, per_device * group_size)


def pad_chains(tree, padded: int):
    """Repeat the last chain along axis 0 until ``padded`` chains (the dummies)."""

    def pad(x):
        missing = padded - x.shape[0]
        if missing <= 0:
            return x
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct((padded, *x.shape[1:]), x.dtype)
        return np.concatenate([np.asarray(x), np.repeat(np.asarray(x)[-1:], missing, axis=0)])

    return jax.tree_util.tree_map(pad, tree)


def shard_chains(mapped, in_axes, placement: ChainPlacement):
    """``mapped`` (a function over a block of chains on axis 0) run on every device of
    ``placement`` over its own block; arguments with axis ``None`` are replicated."""
    specs = tuple(PartitionSpec(CHAIN_AXIS) if axis == 0 else PartitionSpec() for axis in in_axes)
    # Without the replication check, which NUTS's data-dependent loops would only slow down
    # (nothing is replicated out).
    return shard_map(mapped, placement.mesh(), specs, PartitionSpec(CHAIN_AXIS))
