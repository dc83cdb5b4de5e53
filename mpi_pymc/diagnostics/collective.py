"""Convergence diagnostics over chains spread across ranks, without gathering the draws.

Every rank holds a contiguous group of chains. R-hat and ESS need every chain of a parameter at
once (ranks pool all draws), so one ``Alltoallv`` transposes the draws from "my chains, all
parameters" to "all chains, my parameters"; each rank then runs the pure maths of
:mod:`mpi_pymc.diagnostics.maths` on its slice and an ``Allgatherv`` shares the
per-parameter results.
Per rank this holds its own draws, about ``1/size`` of all draws (twice, briefly, while the
received blocks are put in chain order) and ``O(params x chains)`` more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpi_pymc.core.errors import agree
from mpi_pymc.diagnostics.maths import STAT_KEYS, diagnostics_by_parameter

_MPI_MAX_COUNT = 2**31 - 1


@dataclass
class CommunicationRecord:
    """What one call of :func:`distributed_diagnostics` received on this rank (float64 values)."""

    transpose_values: int = 0
    gather_values: int = 0
    param_start: int = 0
    param_stop: int = 0


def parameter_slices(n_params: int, n_ranks: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` parameter ranges, one per rank, sizes differing by at most 1.

    No rank gets more than ``ceil(n_params / n_ranks)``; ranks past ``n_params`` get none.
    """
    base, extra = divmod(n_params, n_ranks)
    sizes = [base + (rank < extra) for rank in range(n_ranks)]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(int)
    return [(int(start), int(start) + size) for start, size in zip(starts, sizes, strict=True)]


def _validation_error(
    shapes: list[tuple[int, ...]], claimed_counts: list[tuple[int, ...] | None]
) -> str | None:
    """The first problem with the ranks' inputs, judged the same way on every rank."""
    for rank, shape in enumerate(shapes):
        if len(shape) != 3:
            return (
                f"rank {rank} passed local_draws of shape {shape}; every rank must pass "
                "(local_chains, draws, n_params)"
            )
        if shape[0] < 1:
            return f"rank {rank} passed no chains; every rank needs at least one chain"
    for name, axis in (("draws", 1), ("n_params", 2)):
        values = [shape[axis] for shape in shapes]
        if len(set(values)) > 1:
            first_odd = next(rank for rank, value in enumerate(values) if value != values[0])
            return (
                f"rank {first_odd} has {name}={values[first_odd]} but rank 0 has "
                f"{name}={values[0]}; every rank must pass the same {name}"
            )
    actual = tuple(shape[0] for shape in shapes)
    for rank, claimed in enumerate(claimed_counts):
        if claimed is not None and claimed != actual:
            return (
                f"rank {rank} passed chain_counts={list(claimed)} but the ranks hold "
                f"{list(actual)} chains; pass the chains per rank in rank order, or None"
            )
    return None


def _transpose_to_parameters(
    local: np.ndarray,
    comm: MPI.Comm,
    chain_counts: Sequence[int],
    slices: Sequence[tuple[int, int]],
) -> np.ndarray:
    """All chains (global order) of this rank's parameter slice, parameters first: ``(my_params,
    chains, draws)``, the layout
    :func:`~mpi_pymc.diagnostics.maths.diagnostics_by_parameter` works in."""
    rank, size = comm.Get_rank(), comm.Get_size()
    local_chains, n_draws, n_params = local.shape
    my_start, my_stop = slices[rank]
    my_params = my_stop - my_start

    # One send unit is one parameter column of all local chains and draws (strided in memory,
    # resized to one double so displacements count parameters): the send side needs no copy.
    column = MPI.DOUBLE.Create_vector(local_chains * n_draws, 1, n_params)
    column_unit = column.Create_resized(0, MPI.DOUBLE.Get_extent()[1]).Commit()
    column.Free()
    send_counts = [stop - start for start, stop in slices]
    send_displs = [start for start, _ in slices]

    block_sizes = [my_params * chains * n_draws for chains in chain_counts]
    recv_displs = np.concatenate(([0], np.cumsum(block_sizes)[:-1])).astype(int).tolist()
    received = np.empty(sum(block_sizes), dtype=np.float64)
    try:
        comm.Alltoallv(
            [local, (send_counts, send_displs), column_unit],
            [received, (block_sizes, recv_displs), MPI.DOUBLE],
        )
    finally:
        column_unit.Free()

    # Each source sent (param, chain, draw): its chains go next to the earlier sources'.
    slice_draws = np.empty((my_params, sum(chain_counts), n_draws), dtype=np.float64)
    first_chain = 0
    for source in range(size):
        chains = chain_counts[source]
        block = received[recv_displs[source] : recv_displs[source] + block_sizes[source]]
        slice_draws[:, first_chain : first_chain + chains] = block.reshape(
            my_params, chains, n_draws
        )
        first_chain += chains
    return slice_draws


def distributed_diagnostics(
    local_draws: np.ndarray,
    comm: MPI.Comm,
    chain_counts: Sequence[int] | None = None,
    *,
    record: CommunicationRecord | None = None,
) -> dict[str, np.ndarray]:
    """Collective: summary diagnostics of all chains on all ranks, returned on every rank.

    Parameters
    ----------
    local_draws
        This rank's contiguous group of chains, ``(local_chains, draws, n_params)``; chains are
        ordered by rank, then by position. ``draws`` and ``n_params`` must match on all ranks.
    comm
        The communicator whose ranks hold the chains.
    chain_counts
        Chains per rank, in rank order, if the caller already knows them (checked).
    record
        If given, filled with the number of float64 values this rank received.

    Returns
    -------
    dict
        ``mean, sd, mcse_mean, r_hat, ess_bulk, ess_tail, r_hat_nested``, each ``(n_params,)``,
        identical on every rank and equal to :func:`mpi_pymc.diagnostics.maths.all_diagnostics` of
        the whole array; nested R-hat treats each rank's chain group as one superchain.

    Raises
    ------
    ValueError
        On every rank, before any draws move, when the ranks' shapes or ``chain_counts`` do not
        fit together.
    mpi_pymc.core.errors.AgreedError
        On every rank when the maths failed on any rank.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    local = np.ascontiguousarray(local_draws, dtype=np.float64)
    claimed = None if chain_counts is None else tuple(int(count) for count in chain_counts)
    gathered = comm.allgather((tuple(local.shape), claimed))
    problem = _validation_error([shape for shape, _ in gathered], [c for _, c in gathered])
    if problem is not None:
        raise ValueError(f"r{rank} | distributed_diagnostics: {problem}")
    counts = [shape[0] for shape, _ in gathered]
    n_params = local.shape[2]
    slices = parameter_slices(n_params, size)
    largest_slice = max(stop - start for start, stop in slices) * sum(counts) * local.shape[1]
    if largest_slice > _MPI_MAX_COUNT:  # MPI counts and displacements are C ints
        raise ValueError(
            f"r{rank} | distributed_diagnostics: one rank would receive {largest_slice} values, "
            f"more than MPI's count limit {_MPI_MAX_COUNT}; use more ranks or pass fewer "
            "parameters per call"
        )
    my_start, my_stop = slices[rank]

    slice_draws = _transpose_to_parameters(local, comm, counts, slices)
    transpose_values = slice_draws.size

    failure: Exception | None = None
    packed = np.empty((my_stop - my_start, len(STAT_KEYS)), dtype=np.float64)
    if packed.shape[0]:
        try:
            local_stats = diagnostics_by_parameter(slice_draws, superchain_sizes=counts)
            for column, key in enumerate(STAT_KEYS):
                packed[:, column] = local_stats[key]
        except Exception as error:  # agreed below, so that no rank waits in Allgatherv forever
            failure = error
    del slice_draws
    agree(comm, failure, "diagnostics")

    stat_count = len(STAT_KEYS)
    results = np.empty((n_params, stat_count), dtype=np.float64)
    comm.Allgatherv(
        packed,
        [
            results,
            (
                [(stop - start) * stat_count for start, stop in slices],
                [start * stat_count for start, _ in slices],
            ),
            MPI.DOUBLE,
        ],
    )
    if record is not None:
        record.transpose_values = transpose_values
        record.gather_values = results.size
        record.param_start, record.param_stop = my_start, my_stop
    return {key: results[:, column].copy() for column, key in enumerate(STAT_KEYS)}
