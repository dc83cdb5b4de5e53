"""Run by tests/diagnostics/test_collective.py under ``mpirun -n N``: distributed vs pure
diagnostics.

Every rank builds the same global draws from a fixed seed, keeps its own contiguous chain group
and calls :func:`mpi_pymc.diagnostics.collective.distributed_diagnostics`. Rank 0 compares the
result with :func:`mpi_pymc.diagnostics.maths.all_diagnostics` of the whole array and with
ArviZ, and writes what it found, with every rank's communication record, to the JSON file named
by ``--out``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpi_pymc.diagnostics.collective import CommunicationRecord, distributed_diagnostics
from mpi_pymc.diagnostics.maths import STAT_KEYS, all_diagnostics


def global_draws(n_chains: int, n_draws: int, n_params: int, seed: int) -> np.ndarray:
    """Deterministic draws: autocorrelated, constant, multimodal, discrete, then iid parameters."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(size=(n_chains, n_draws, n_params)) * (1.0 + np.arange(n_params))
    kinds = [
        lambda: np.cumsum(rng.normal(size=(n_chains, n_draws)), axis=1) * 0.2,
        lambda: np.full((n_chains, n_draws), 2.5),
        lambda: rng.normal(size=(n_chains, n_draws)) + 6.0 * (np.arange(n_chains) % 2)[:, None],
        lambda: rng.poisson(2.0, size=(n_chains, n_draws)).astype(float),
    ]
    for param, make in enumerate(kinds[:n_params]):
        draws[..., param] = make()
    return draws


def parse_counts(text: str | None, n_chains: int, size: int) -> list[int]:
    if text:
        return [int(count) for count in text.split(",")]
    return [len(group) for group in np.array_split(np.arange(n_chains), size)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chains", type=int, required=True)
    parser.add_argument("--draws", type=int, required=True)
    parser.add_argument("--params", type=int, required=True)
    parser.add_argument("--chain-counts", help="chains per rank, comma separated")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--out", required=True)
    parser.add_argument("--bad-draws", action="store_true", help="rank 1 passes one draw fewer")
    args = parser.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    counts = parse_counts(args.chain_counts, args.chains, size)
    if len(counts) != size or sum(counts) != args.chains:
        raise SystemExit(f"r{rank} | --chain-counts {counts} do not fit {args.chains} chains")
    draws = global_draws(args.chains, args.draws, args.params, args.seed)
    first = sum(counts[:rank])
    local = draws[first : first + counts[rank]]
    if args.bad_draws and rank == 1:
        local = local[:, :-1]
    del draws  # the driver must not need it; rank 0 rebuilds it below for the comparison

    record = CommunicationRecord()
    result = distributed_diagnostics(local, comm, chain_counts=counts, record=record)

    records = comm.gather(asdict(record), root=0)
    results = comm.gather(result, root=0)
    if rank != 0:
        return 0

    # Reuse the ArviZ adapter and comparison of the pure tests.
    tests = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(tests), str(tests / "diagnostics")]
    from test_maths import COMPARED, arviz_reference, relative_difference

    full = global_draws(args.chains, args.draws, args.params, args.seed)
    pure = all_diagnostics(full, superchain_sizes=counts)
    arviz = arviz_reference(full)
    report = {
        "size": size,
        "chain_counts": counts,
        "keys": sorted(result),
        "identical_on_all_ranks": all(
            all(np.array_equal(other[key], result[key], equal_nan=True) for key in STAT_KEYS)
            for other in results
        ),
        "max_rel_diff_pure": {
            key: float(relative_difference(result[key], pure[key]).max()) for key in STAT_KEYS
        },
        "max_rel_diff_arviz": {
            key: float(relative_difference(result[key], arviz[key]).max()) for key in COMPARED
        },
        "records": records,
        "transpose_bound": math.ceil(args.params / size) * args.chains * args.draws,
        "results": {key: result[key].tolist() for key in STAT_KEYS},
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
