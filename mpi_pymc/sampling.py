"""A rank's chain group: the project's NUTS (default), numpyro's, blackjax's or adaptive HMC,
warmup then chunked sampling.

Each backend is a pair of pure per-chain functions over a pytree state:
``init(key, position, data) -> state`` and ``step(state, data) -> (state, stats)``. A chunk is a
``lax.scan`` of steps; a rank's chains run it either ``vmap``-ed together (vectorized) or one
after another (sequential). The state holds everything the chain needs to continue — position,
step size, mass matrix, adaptation state, PRNG key, iteration — so a checkpoint is the state.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpi_pymc.compile import CompiledModel
from mpi_pymc.config import RunConfig

STAT_NAMES = ("lp", "diverging", "energy", "step_size", "tree_depth", "n_steps", "acceptance_rate")


def _tree_depth(n_steps):
    # NUTS doubles the trajectory each level; depth d integrates at most 2**d - 1 steps.
    return jnp.floor(jnp.log2(jnp.maximum(n_steps, 1))).astype(jnp.int32) + 1


class _NumpyroBackend:
    """numpyro's functional NUTS: ``hmc(potential_fn_gen=...)`` keeps data an argument."""

    warmup_in_chunks = True

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
            "tree_depth": _tree_depth(new.num_steps),
            "n_steps": new.num_steps,
            "acceptance_rate": new.accept_prob,
        }
        return new, new.z, stats


class BlackjaxState(NamedTuple):
    i: jax.Array
    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    rng_key: jax.Array


class _BlackjaxBackend:
    """blackjax NUTS with Stan-style window adaptation, run as one block of ``tune`` steps."""

    warmup_in_chunks = False

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
            "tree_depth": _tree_depth(info.num_integration_steps),
            "n_steps": info.num_integration_steps,
            "acceptance_rate": info.acceptance_rate,
        }
        return new, nuts_state.position, stats


class _KernelBackend:
    """A per-chain kernel of this package (``init``, ``step``, ``warmup_step`` over a state
    with an iteration counter ``i``), with the ``tree_depth`` statistic added."""

    warmup_in_chunks = True
    _kernel: Any

    def init(self, key, position, data):
        return self._kernel.init(key, position, data)

    def iteration(self, state):
        return state.i

    def _with_depth(self, result):
        new, position, stats = result
        # The depth of a NUTS tree holding that many steps (hmc: comparable across samplers).
        return new, position, {**stats, "tree_depth": _tree_depth(stats["n_steps"])}

    def step(self, state, data):
        return self._with_depth(self._kernel.step(state, data))

    def warmup_step(self, state, data):
        return self._with_depth(self._kernel.warmup_step(state, data))


class _NutsBackend(_KernelBackend):
    """The project's NUTS (see :mod:`mpi_pymc.nuts`): one loop of leapfrogs per transition."""

    def __init__(self, compiled: CompiledModel, config: RunConfig):
        from mpi_pymc.nuts import Nuts

        self._kernel = Nuts(
            compiled.logdensity,
            tune=config.tune,
            target_accept=config.target_accept,
            max_depth=config.max_tree_depth,
        )


class _HmcBackend(_KernelBackend):
    """Adaptive jittered HMC (see :mod:`mpi_pymc.hmc`): fixed-length trajectories."""

    def __init__(self, compiled: CompiledModel, config: RunConfig):
        from mpi_pymc.hmc import AdaptiveHmc

        self._kernel = AdaptiveHmc(
            compiled.logdensity,
            tune=config.tune,
            target_accept=config.target_accept,
            max_steps=2**config.max_tree_depth,
            group_size=config.adapt_group,
        )


def _loop_steps(step, length: int):
    """``run(state, n, data)``: ``n`` steps (``n <= length``, traced), draws in a fixed buffer.

    The trip count is a runtime value, so one compiled program serves every chunk, the last
    and shorter one included (a ``scan`` would compile once per distinct length).
    """

    def run(state, n, data):
        shapes = jax.eval_shape(lambda s: step(s, data)[1:], state)
        buffers = jax.tree_util.tree_map(lambda x: jnp.zeros((length, *x.shape), x.dtype), shapes)

        def body(i, carry):
            current, buffer = carry
            new, position, stats = step(current, data)
            buffer = jax.tree_util.tree_map(lambda b, v: b.at[i].set(v), buffer, (position, stats))
            return new, buffer

        return jax.lax.fori_loop(0, n, body, (state, buffers))

    return run


def _warmup_steps(step, iteration, tune: int):
    """``run(state, n, data)``: up to ``n`` warmup steps, none once the chain's own iteration
    counter reaches ``tune`` (a NUTS chain whose adaptation converged jumps ahead to its last
    window, so its warmup ends before the others')."""

    def run(state, n, data):
        def cond(carry):
            j, s = carry
            return (j < n) & (iteration(s) < tune)

        return jax.lax.while_loop(cond, lambda c: (c[0] + 1, step(c[1], data)[0]), (0, state))[1]

    return run


def vmap_chains(fn, in_axes, group_size: int = 1):
    """``vmap`` of a per-chain ``fn`` over the chain axis (0), in adaptation groups if asked.

    With ``group_size`` > 1 the chain axis splits into (groups, group_size) and the inner
    ``vmap`` names its axis :data:`~mpi_pymc.hmc.GROUP_AXIS`, so the kernel's ``pmean``
    averages over a group only; with 1 it is a plain ``vmap``.
    """
    if group_size == 1:
        return jax.vmap(fn, in_axes=in_axes)
    from mpi_pymc.hmc import GROUP_AXIS

    inner = jax.vmap(fn, in_axes=in_axes, axis_name=GROUP_AXIS)
    outer = jax.vmap(inner, in_axes=in_axes)

    def split(x):
        return x.reshape(-1, group_size, *x.shape[1:])

    def mapped(*args):
        args = [
            jax.tree_util.tree_map(split, arg) if axis == 0 else arg
            for arg, axis in zip(args, in_axes, strict=True)
        ]
        out = outer(*args)
        return jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    return mapped


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n: int):
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], tree) for i in range(n)]


class ChainGroupSampler:
    """Runs the NUTS chains of one rank; states are batched over the rank's chains."""

    def __init__(self, compiled: CompiledModel, config: RunConfig):
        self.backend: _NutsBackend | _NumpyroBackend | _BlackjaxBackend | _HmcBackend
        if config.sampler == "nuts":
            self.backend = _NutsBackend(compiled, config)
        elif config.sampler == "blackjax":
            self.backend = _BlackjaxBackend(compiled, config)
        elif config.sampler == "hmc":
            self.backend = _HmcBackend(compiled, config)
        else:
            self.backend = _NumpyroBackend(compiled, config)
        self.compiled = compiled
        self.vectorized = config.chain_method == "vectorized"
        self.tune = config.tune
        self.chunk = min(config.chunk_draws, max(config.draws, config.tune, 1))
        self.group_size = config.adapt_group
        self._cache: dict = {}

    def _compiled_fn(self, name: str, fn, in_axes):
        """jit (and vmap, when vectorized) ``fn`` once per name."""
        if name not in self._cache:
            mapped = vmap_chains(fn, in_axes, self.group_size) if self.vectorized else fn
            self._cache[name] = jax.jit(mapped)
        return self._cache[name]

    def _map_chains(self, name: str, fn, in_axes, batched_args, shared_args):
        """Apply a per-chain function to every chain of the group, by the chosen method."""
        mapped = self._compiled_fn(name, fn, in_axes)
        if self.vectorized:
            return mapped(*batched_args, *shared_args)
        count = jax.tree_util.tree_leaves(batched_args[0])[0].shape[0]
        per_chain = [_unstack(arg, count) for arg in batched_args]
        return _stack([mapped(*args, *shared_args) for args in zip(*per_chain, strict=True)])

    def init(self, keys: np.ndarray, positions: np.ndarray):
        return self._map_chains(
            "init",
            self.backend.init,
            (0, 0, None),
            (jnp.asarray(keys, dtype=jnp.uint32), jnp.asarray(positions)),
            (self.compiled.data,),
        )

    def iterations(self, state) -> np.ndarray:
        return np.asarray(self.backend.iteration(state))

    def _programs(self):
        """(name, function, in_axes) of the warmup and sampling programs."""
        if self.backend.warmup_in_chunks:
            step = getattr(self.backend, "warmup_step", self.backend.step)
            warmup = (
                "warmup",
                _warmup_steps(step, self.backend.iteration, self.tune),
                (0, None, None),
            )
        else:
            warmup = ("warmup", self.backend.warmup, (0, None))
        sample = ("sample", _loop_steps(self.backend.step, self.chunk), (0, None, None))
        return warmup, sample

    def warmup(self, state, n: int):
        """Advance ``n`` warmup iterations (blackjax: the whole warmup at once)."""
        (name, fn, axes), _ = self._programs()
        if self.backend.warmup_in_chunks:
            return self._map_chains(name, fn, axes, (state,), (n, self.compiled.data))
        return self._map_chains(name, fn, axes, (state,), (self.compiled.data,))

    def sample(self, state, n: int):
        """Advance ``n`` sampling iterations; return state, positions (k, n, D), stats (k, n)."""
        _, (name, fn, axes) = self._programs()
        state, (positions, stats) = self._map_chains(
            name, fn, axes, (state,), (n, self.compiled.data)
        )
        positions = positions[:, :n]
        stats = {key: value[:, :n] for key, value in stats.items()}
        return state, positions, stats

    def program_names(self) -> list[str]:
        """The programs :meth:`precompile` can build, in the order a run first needs them."""
        return (["warmup"] if self.tune else []) + ["sample"]

    def precompile(self, state, names: list[str] | None = None) -> None:
        """Compile (not run) the warmup and/or sampling programs, filling JAX's persistent cache.

        In a run, ranks 0 and 1 compile one program each, side by side, and every rank then
        loads both from the cache instead of compiling them again.
        """
        example = state if self.vectorized else _unstack(state, 1)[0]
        (w_name, w_fn, w_axes), (s_name, s_fn, s_axes) = self._programs()
        chunk = jnp.asarray(self.chunk)
        data = self.compiled.data
        names = self.program_names() if names is None else names
        lowered = []
        if self.tune and w_name in names:
            warmup_args = (chunk, data) if self.backend.warmup_in_chunks else (data,)
            lowered.append(self._compiled_fn(w_name, w_fn, w_axes).lower(example, *warmup_args))
        if s_name in names:
            lowered.append(self._compiled_fn(s_name, s_fn, s_axes).lower(example, chunk, data))
        # Tracing holds the GIL, XLA's compiler does not: two programs compile at once.
        with ThreadPoolExecutor(max_workers=max(1, len(lowered))) as pool:
            for future in [pool.submit(program.compile) for program in lowered]:
                future.result()

    def constrain(self, positions) -> list[np.ndarray]:
        """Unconstrained draws (k, n, D) -> constrained variables, each (k, n, *shape).

        Chain by chain, so a chain's values never depend on which other chains share the rank.
        """
        if "constrain" not in self._cache:
            self._cache["constrain"] = jax.jit(jax.vmap(self.compiled.constrain, in_axes=(0, None)))
        fn = self._cache["constrain"]
        per_chain = [fn(positions[i], self.compiled.data) for i in range(positions.shape[0])]
        return [np.stack([np.asarray(c[v]) for c in per_chain]) for v in range(len(per_chain[0]))]


INIT_BLOCK = 64  # chains whose starting points are checked in one call


def initial_positions(
    compiled: CompiledModel, model, root_seed: int, chains: range, max_tries: int = 10
) -> np.ndarray:
    """Jittered starting points, one per chain, as PyMC's ``jitter+adapt_diag`` makes them.

    Chain ``c`` draws its jitter from its own seed stream, so its start does not depend on the
    chain group. Raises ``ValueError`` when the model's initial point itself has no finite
    log-density (naming the variables at fault).
    """
    from mpi_pymc.seeding import jitter_rng

    value_and_grad = jax.value_and_grad(compiled.logdensity)
    # Candidates are checked a block at a time (one vmapped call, not one call per chain: with
    # 1024 chains on a GPU the per-call round trips added seconds). One fixed block size, so
    # one compile.
    block = min(INIT_BLOCK, len(chains))
    check_block = jax.jit(jax.vmap(value_and_grad, in_axes=(0, None)))

    def finite_rows(candidates: np.ndarray) -> np.ndarray:
        ok = np.empty(len(candidates), dtype=bool)
        for start in range(0, len(candidates), block):
            part = candidates[start : start + block]
            padded = np.concatenate([part, np.repeat(part[:1], block - len(part), axis=0)])
            values, grads = check_block(jnp.asarray(padded), compiled.data)
            finite = np.isfinite(np.asarray(values)) & np.all(np.isfinite(np.asarray(grads)), 1)
            ok[start : start + len(part)] = finite[: len(part)]
        return ok

    base = compiled.initial_flat
    if not finite_rows(base[None, :])[0]:
        logps = model.point_logps(model.initial_point())
        bad = [name for name, value in logps.items() if not np.isfinite(value)]
        raise ValueError(
            "the model's initial point has a non-finite log-density"
            + (f" (at {', '.join(bad)})" if bad else " or gradient")
            + ": set valid initvals in the model or fix the priors/data"
        )
    # Chain c's k-th candidate is the k-th draw of its own jitter stream, as when chains were
    # tried one by one; a chain with no finite candidate in max_tries starts at the base point.
    rngs = [jitter_rng(root_seed, chain) for chain in chains]
    starts = np.repeat(base[None, :], len(rngs), axis=0)
    pending = np.arange(len(rngs))
    for _ in range(max_tries):
        if not len(pending):
            break
        jitters = [rngs[i].uniform(-1.0, 1.0, size=base.shape) for i in pending]
        candidates = np.stack([(base + jitter).astype(base.dtype) for jitter in jitters])
        ok = finite_rows(candidates)
        starts[pending[ok]] = candidates[ok]
        pending = pending[~ok]
    return starts
