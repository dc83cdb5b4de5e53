"""``--sampler numpyro``: numpyro's NUTS with its Stan-style warmup, as
``pm.sample(nuts_sampler="numpyro")`` runs it.

numpyro is imported when a backend is built, not with this module (it is slow to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpi_pymc.sampling.base import ChunkedWarmup, tree_depth

if TYPE_CHECKING:
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.model.compile import CompiledModel


class NumpyroNuts(ChunkedWarmup):
    """numpyro's functional NUTS: ``hmc(potential_fn_gen=...)`` keeps data an argument. Its
    state adapts by itself while its iteration is under ``num_warmup``, so a warmup step is a
    step."""

    def __init__(self, compiled: CompiledModel, config: RunConfig):
        from numpyro.infer.hmc import hmc

        def potential_fn_gen(data):
            return lambda z: -compiled.logdensity(z, data)

        self._init_kernel, self._sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
        self._tune = config.tune
        self._target_accept = config.target_accept
        self._max_tree_depth = config.max_tree_depth

    def init(self, key, position, data):
        return self._init_kernel(
            position,
            num_warmup=self._tune,
            target_accept_prob=self._target_accept,
            max_tree_depth=self._max_tree_depth,
            model_args=(data,),
            rng_key=key,
        )

    def iteration(self, state):
        return state.i

    def step(self, state, data):
        step_size = state.adapt_state.step_size
        new = self._sample_kernel(state, model_args=(data,))
        stats = {
            "lp": -new.potential_energy,
            "diverging": new.diverging,
            "energy": new.energy,
            "step_size": step_size,
            "tree_depth": tree_depth(new.num_steps),
            "n_steps": new.num_steps,
            "acceptance_rate": new.accept_prob,
        }
        return new, new.z, stats

    def warmup_step(self, state, data):
        return self.step(state, data)
