"""``--sampler blackjax``: blackjax's NUTS with Stan-style window adaptation, as
``pm.sample(nuts_sampler="blackjax")`` runs it: the whole warmup is one program.

blackjax is imported when its functions are traced, not with this module (it is slow to
import).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from mpi_pymc.sampling.base import WholeWarmup, tree_depth

if TYPE_CHECKING:
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.model.compile import CompiledModel


class BlackjaxState(NamedTuple):
    i: jax.Array
    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    rng_key: jax.Array


class BlackjaxNuts(WholeWarmup):
    """blackjax NUTS after ``blackjax.window_adaptation`` over ``tune`` steps at once."""

    def __init__(self, compiled: CompiledModel, config: RunConfig):
        self._logdensity = compiled.logdensity
        self._tune = config.tune
        self._target_accept = config.target_accept
        self._max_tree_depth = config.max_tree_depth

    def init(self, key, position, data):
        import blackjax

        logdensity = partial(self._logdensity, data=data)
        state = blackjax.nuts.init(position, logdensity)
        return BlackjaxState(
            i=jnp.zeros((), jnp.int32),
            position=state.position,
            logdensity=state.logdensity,
            logdensity_grad=state.logdensity_grad,
            step_size=jnp.ones((), position.dtype),
            inverse_mass_matrix=jnp.ones_like(position),
            rng_key=key,
        )

    def iteration(self, state):
        return state.i

    def warmup(self, state, data):
        import blackjax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        logdensity = partial(self._logdensity, data=data)
        key, warmup_key = jax.random.split(state.rng_key)
        adaptation = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity,
            target_acceptance_rate=self._target_accept,
            adaptation_info_fn=get_filter_adapt_info_fn(),
            max_num_doublings=self._max_tree_depth,
        )
        (nuts_state, parameters), _ = adaptation.run(
            warmup_key, state.position, num_steps=self._tune
        )
        return BlackjaxState(
            i=state.i + self._tune,
            position=nuts_state.position,
            logdensity=nuts_state.logdensity,
            logdensity_grad=nuts_state.logdensity_grad,
            step_size=jnp.asarray(parameters["step_size"], state.step_size.dtype),
            inverse_mass_matrix=parameters["inverse_mass_matrix"],
            rng_key=key,
        )

    def step(self, state, data):
        import blackjax
        from blackjax.mcmc.hmc import HMCState

        logdensity = partial(self._logdensity, data=data)
        kernel = blackjax.nuts(
            logdensity,
            step_size=state.step_size,
            inverse_mass_matrix=state.inverse_mass_matrix,
            max_num_doublings=self._max_tree_depth,
        )
        key, step_key = jax.random.split(state.rng_key)
        nuts_state, info = kernel.step(
            step_key, HMCState(state.position, state.logdensity, state.logdensity_grad)
        )
        new = state._replace(
            i=state.i + 1,
            position=nuts_state.position,
            logdensity=nuts_state.logdensity,
            logdensity_grad=nuts_state.logdensity_grad,
            rng_key=key,
        )
        stats = {
            "lp": nuts_state.logdensity,
            "diverging": info.is_divergent,
            "energy": info.energy,
            "step_size": state.step_size,
            "tree_depth": tree_depth(info.num_integration_steps),
            "n_steps": info.num_integration_steps,
            "acceptance_rate": info.acceptance_rate,
        }
        return new, nuts_state.position, stats
