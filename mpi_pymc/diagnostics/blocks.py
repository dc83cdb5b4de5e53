"""Blocks of parameters on the rank's cores: every parameter's statistics are independent of the
others, so a large input is cut into contiguous blocks of parameters that run as threads (NumPy
lets go of the GIL in its sorts, FFTs and array loops)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mpi_pymc.core.topology import usable_cores  # a pinned rank's own cores, not the node's

# Inputs above this many values spread their parameters over at most MAX_THREADS threads.
THREADED_SIZE = 100_000


MAX_THREADS = 16


def parameter_blocks(n_params: int, size: int) -> tuple[int, np.ndarray]:
    """Threads, and the parameter bounds of the blocks, for ``size`` values of ``n_params``."""
    workers = min(n_params, usable_cores(), MAX_THREADS) if size > THREADED_SIZE else 1
    n_blocks = min(n_params, 4 * workers) if workers > 1 else 1
    return workers, np.linspace(0, n_params, n_blocks + 1).astype(int)


def by_blocks(fn, rows: np.ndarray):
    """``fn`` of contiguous blocks of parameters (``rows`` is ``(n_params, chains, draws)``),
    joined along the parameter axis; ``fn`` returns an array or a dict of arrays, parameters
    first.

    Every parameter's statistics are independent of the others, so large inputs spread their
    blocks over threads (NumPy's sorts, FFTs and array loops let go of the GIL). Each block is
    copied C-contiguous first, so a parameter's numbers do not depend on the block it fell in.
    """
    workers, bounds = parameter_blocks(rows.shape[0], rows.size)
    n_blocks = len(bounds) - 1

    def block(i: int):
        return fn(np.ascontiguousarray(rows[bounds[i] : bounds[i + 1]], dtype=float))

    if workers == 1:
        parts = [block(0)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(block, range(n_blocks)))
    if isinstance(parts[0], dict):
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return np.concatenate(parts)
