"""Chain numbering, chain groups and seeds: pure arithmetic, no MPI.

Chain ``c`` of a run with root seed ``s`` is seeded by ``SeedSequence(s).spawn(C)[c]``, which
equals ``SeedSequence(s, spawn_key=(c,))`` — a function of ``(s, c)`` alone, so a chain's draws do
not depend on how many ranks share the work. Its two independent streams (sampler key and
initial-point jitter) are that sequence's first two children; the third seeds the chain's
posterior-predictive draws (``postprocess``), so they too depend on the chain alone.
"""

from __future__ import annotations

import secrets

import numpy as np

_SAMPLER_STREAM = 0
_JITTER_STREAM = 1
_PREDICTIVE_STREAM = 2


def chain_group(chains: int, ranks: int, rank: int) -> range:
    """Contiguous global chain ids owned by ``rank`` (sizes differ by at most one)."""
    if not 0 <= rank < ranks:
        raise ValueError(f"rank {rank} outside 0..{ranks - 1}")
    if chains < ranks:
        raise ValueError(f"{chains} chains cannot be split over {ranks} ranks")
    base, extra = divmod(chains, ranks)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def chain_groups(chains: int, ranks: int) -> list[range]:
    return [chain_group(chains, ranks, r) for r in range(ranks)]


def chain_seed_sequence(root_seed: int, chain: int) -> np.random.SeedSequence:
    """The seed of global chain ``chain``: ``SeedSequence(root_seed).spawn(C)[chain]``."""
    return np.random.SeedSequence(root_seed, spawn_key=(chain,))


def sampler_key(root_seed: int, chain: int) -> np.ndarray:
    """Raw ``uint32[2]`` JAX PRNG key for the chain's sampler."""
    child = np.random.SeedSequence(root_seed, spawn_key=(chain, _SAMPLER_STREAM))
    return child.generate_state(2, dtype=np.uint32)


def sampler_keys(root_seed: int, chains: range | list[int]) -> np.ndarray:
    return np.stack([sampler_key(root_seed, c) for c in chains])


def predictive_key(root_seed: int, chain: int) -> np.ndarray:
    """Raw ``uint32[2]`` JAX PRNG key of the chain's posterior-predictive draws; draw ``d``
    folds ``d`` (its index in the posterior) into it."""
    child = np.random.SeedSequence(root_seed, spawn_key=(chain, _PREDICTIVE_STREAM))
    return child.generate_state(2, dtype=np.uint32)


def jitter_rng(root_seed: int, chain: int) -> np.random.Generator:
    """NumPy generator for the chain's initial-point jitter."""
    child = np.random.SeedSequence(root_seed, spawn_key=(chain, _JITTER_STREAM))
    return np.random.default_rng(child)


def fresh_root_seed() -> int:
    """A new root seed for runs without ``--seed`` (drawn once, on rank 0)."""
    return secrets.randbits(63)
