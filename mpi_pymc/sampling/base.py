"""What :class:`~mpi_pymc.sampling.chain_group.ChainGroupSampler` needs of a sampler: the
interface every module of this package implements.

A backend is a set of pure per-chain functions over a pytree state. The chain group sampler
``jit``-s them, ``vmap``-s them over a rank's chains (or loops over the chains) and runs them in
chunks, so a backend never sees more than one chain, and a checkpoint is the state: the state
holds everything the chain needs to continue (position, step size, mass matrix, adaptation
state, PRNG key, iteration).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

# The statistics every step returns, one value per chain and iteration, stored as the
# ``sample_stats`` group (dtypes: ``layout.STAT_DTYPES``):
#   lp               log-density of the returned position
#   diverging        bool: the trajectory's energy error exceeded the sampler's bound
#                    (``DIVERGENCE_ENERGY`` for this project's kernels)
#   energy           Hamiltonian at the returned point
#   step_size        the leapfrog step size the iteration used
#   tree_depth       int: NUTS tree depth (``tree_depth(n_steps)`` where there is no tree)
#   n_steps          int: leapfrog steps integrated
#   acceptance_rate  mean Metropolis acceptance of the trajectory's points
STAT_NAMES = ("lp", "diverging", "energy", "step_size", "tree_depth", "n_steps", "acceptance_rate")

# An energy error above this marks a transition divergent (as Stan, numpyro and blackjax set it).
DIVERGENCE_ENERGY = 1000.0

# vmap axis name of an adaptation group (``--adapt-group``): with groups, the chain group
# sampler maps a backend's functions with an inner ``vmap`` of this name, over which a backend
# may ``pmean`` (see :func:`~mpi_pymc.sampling.chain_group.vmap_chains`).
GROUP_AXIS = "adaptation_group"

State = Any  # a per-chain pytree; its flattened leaves are the checkpoint
Stats = dict[str, jax.Array]  # the STAT_NAMES of one iteration


@runtime_checkable
class SamplerBackend(Protocol):
    """A sampler, per chain. Built from ``(compiled, config)`` by its factory in
    :data:`mpi_pymc.sampling.BACKENDS`; ``data`` is ``compiled.data``, an argument of every
    function (not a constant), so one compiled program serves any data of the same shape.

    Warmup runs one of two ways, as ``warmup_in_chunks`` says. True: the chain group sampler
    calls ``warmup_step`` until ``iteration`` reaches ``config.tune``, in chunks, so a stopped
    run resumes mid-warmup. False: it calls ``warmup`` once for the whole warmup. The other
    member raises ``NotImplementedError`` (:class:`ChunkedWarmup` and :class:`WholeWarmup` say
    which, for a backend that inherits one).
    """

    warmup_in_chunks: bool

    def init(self, key: jax.Array, position: jax.Array, data: Any) -> State:
        """A chain's state at ``position`` (unconstrained, flat), with its PRNG ``key``."""
        ...

    def iteration(self, state: State) -> jax.Array:
        """Iterations done (warmup included); may jump ahead, up to ``tune``, in warmup."""
        ...

    def step(self, state: State, data: Any) -> tuple[State, jax.Array, Stats]:
        """A sampling iteration: ``(state, position, stats)``, ``stats`` keyed by STAT_NAMES."""
        ...

    def warmup_step(self, state: State, data: Any) -> tuple[State, jax.Array, Stats]:
        """A warmup iteration (adapting), returning what :meth:`step` returns."""
        ...

    def warmup(self, state: State, data: Any) -> State:
        """The whole warmup at once: the state after ``tune`` iterations."""
        ...


class ChunkedWarmup:
    """Mixin of a backend that warms up with ``warmup_step``, a chunk at a time."""

    warmup_in_chunks = True

    def warmup(self, state: State, data: Any) -> State:
        raise NotImplementedError(f"{type(self).__name__} warms up in chunks: use warmup_step")


class WholeWarmup:
    """Mixin of a backend whose warmup is one program, ``warmup``."""

    warmup_in_chunks = False

    def warmup_step(self, state: State, data: Any) -> tuple[State, jax.Array, Stats]:
        raise NotImplementedError(f"{type(self).__name__} warms up at once: use warmup")


def tree_depth(n_steps):
    """The depth of a NUTS tree of ``n_steps`` leapfrogs: depth ``d`` integrates at most
    ``2**d - 1`` (hmc reports it too, so the statistic compares across samplers)."""
    return jnp.floor(jnp.log2(jnp.maximum(n_steps, 1))).astype(jnp.int32) + 1
