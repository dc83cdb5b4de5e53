"""The data-parallel log-density: a :class:`~mpi_pymc.model.row_shards.RowSplit` run over
``S`` devices, one row shard each (a process's own, or those of several processes).

``shard_map`` over a 1-D mesh (axis :data:`DATA_AXIS`) runs the prior part and the device's
shard's likelihood on every device, and ``psum`` adds the likelihoods inside the compiled
program: every device holds the same total, so every device (and every chain's NUTS tree built
on it) takes the same decisions, with no host round trip per leapfrog. The result is an
ordinary ``logdensity(flat, data)``: a sampler ``vmap``-s, ``jit``-s and differentiates it as it
would the whole program (the gradient of the replicated position is the ``psum`` of the
shards', by JAX's transpose of the ``shard_map``).

The row arrays are placed once, each device holding only its shard's rows; the prior's data
and the likelihood's data that is not per row are replicated.

The devices may be those of several processes (``mpi_pymc.core.jax_distributed`` started over
them): the mesh is then global, the ``psum`` a collective between the processes (gloo on CPUs),
and every process calls the compiled program with the same arguments, as SPMD requires.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mpi_pymc.core.config import UserError
from mpi_pymc.model.row_shards import RowSplit

__all__ = ["DATA_AXIS", "data_parallel", "shard_map"]

DATA_AXIS = "data_shards"  # the mesh axis the rows are split over (chains: CHAIN_AXIS)


def shard_map(f, mesh, in_specs, out_specs, check: bool = False):
    """``jax.shard_map`` (JAX >= 0.6), else the experimental one. ``check``: JAX's check that
    what is declared replicated is (off where NUTS's data-dependent loops would only slow it)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=check)
    from jax.experimental.shard_map import shard_map as experimental

    return experimental(f, mesh, in_specs=in_specs, out_specs=out_specs, check_rep=check)


def data_parallel(split: RowSplit, devices) -> tuple[Callable, tuple]:
    """``(logdensity, data)``: the split model's log-density over the first ``S`` of
    ``devices`` (``S = split.layout.shards``) and its data, placed on them."""
    shards = split.layout.shards
    devices = list(devices)
    if len(devices) < shards:
        raise UserError(
            f"--data-shards {shards} needs {shards} devices in the process, which has "
            f"{len(devices)}: set JAX_NUM_CPU_DEVICES or --gpus-per-rank to {shards} or more"
        )
    mesh = Mesh(np.asarray(devices[:shards]), (DATA_AXIS,))
    rows_spec, whole = PartitionSpec(DATA_AXIS), PartitionSpec()

    def local(flat, data):
        prior_data, rows, likelihood_data = data
        mine = split.shard_likelihood(flat, rows, likelihood_data)
        return split.prior(flat, prior_data) + jax.lax.psum(mine, DATA_AXIS)

    # The replication check stays on: it is what makes JAX sum the shards' gradients of the
    # replicated position (and there is no loop here for it to slow down).
    summed = shard_map(local, mesh, (whole, (whole, rows_spec, whole)), whole, check=True)

    def logdensity(flat, data):
        return summed(flat, data)

    data = (
        _place(split.prior_data, NamedSharding(mesh, whole)),
        _place_rows(split, NamedSharding(mesh, rows_spec)),
        _place(split.likelihood_data, NamedSharding(mesh, whole)),
    )
    return logdensity, data


def _place(tree, sharding: NamedSharding):
    """``tree``'s arrays placed by ``sharding``, each device given only its slice: also where
    the mesh spans several processes (``jax.distributed``), in which each places its own."""

    def one(value):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree_util.tree_map(one, tree)


def _place_rows(split: RowSplit, sharding: NamedSharding) -> tuple:
    """The row arrays as global ``(shards * per_shard, ...)`` arrays split by ``sharding``, each
    device's block made from its own shard (:meth:`RowSplit.shard_rows`): the padded whole is
    never built, so a rank holds the model's rows and its devices' shards, nothing more."""
    size = split.layout.per_shard
    arrays = []
    for column, values in enumerate(split.rows):
        shape = (size * split.layout.shards, *np.shape(values)[1:])

        def block(index, column=column):
            shard = (index[0].start or 0) // size
            return split.shard_column(column, shard)[(slice(None), *index[1:])]

        arrays.append(jax.make_array_from_callback(shape, sharding, block))
    return tuple(arrays)
