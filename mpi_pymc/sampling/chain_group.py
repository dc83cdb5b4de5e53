"""A rank's chain group: the sampler that ``--sampler`` names (:mod:`mpi_pymc.sampling`), warmup
then chunked sampling, and the chains' starting points.

A sampler is a set of pure per-chain functions over a pytree state
(:class:`~mpi_pymc.sampling.base.SamplerBackend`). A chunk is a loop of steps; a rank's chains
run it either ``vmap``-ed together (vectorized) or one after another (sequential). The state
holds everything the chain needs to continue — position, step size, mass matrix, adaptation
state, PRNG key, iteration — so a checkpoint is the state.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import SingleDeviceSharding

from mpi_pymc.core.config import RunConfig
from mpi_pymc.model.compile import CompiledModel
from mpi_pymc.sampling import metric as metrics
from mpi_pymc.sampling.base import GROUP_AXIS, STAT_NAMES, SamplerBackend
from mpi_pymc.sampling.chain_devices import (
    ChainPlacement,
    pad_chains,
    place_chains,
    shard_chains,
)
from mpi_pymc.sampling.registry import backend_for

__all__ = [
    "INIT_BLOCK",
    "STAT_NAMES",
    "ChainGroupSampler",
    "Starts",
    "initial_positions",
    "vmap_chains",
]


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


def _on_its_diagonal(step):
    """``step`` with the state's metric narrowed to its diagonal (no low-rank columns) and given
    back as it was: a sampling step leaves the metric alone. With every column unused (value 1)
    the low-rank terms add exact zeros (``metric.velocity``, ``kinetic``, ``momentum``), so the
    draws are those of ``step``, bit for bit, without the O(dk) per leapfrog."""

    def run(state, data):
        wide = state.metric
        narrow = metrics.diagonal(wide.inv_diag, 0)
        new, position, stats = step(state._replace(metric=narrow), data)
        return new._replace(metric=wide), position, stats

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
    ``vmap`` names its axis :data:`~mpi_pymc.sampling.base.GROUP_AXIS`, so the kernel's ``pmean``
    averages over a group only; with 1 it is a plain ``vmap``.
    """
    if group_size == 1:
        return jax.vmap(fn, in_axes=in_axes)
    inner = jax.vmap(fn, in_axes=in_axes, axis_name=GROUP_AXIS)
    outer = jax.vmap(inner, in_axes=in_axes)

    def split(x):  # explicit sizes: a leaf may hold no values (the diagonal metric's buffer)
        return x.reshape(x.shape[0] // group_size, group_size, *x.shape[1:])

    def mapped(*args):
        args = [
            jax.tree_util.tree_map(split, arg) if axis == 0 else arg
            for arg, axis in zip(args, in_axes, strict=True)
        ]
        out = outer(*args)
        return jax.tree_util.tree_map(
            lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), out
        )

    return mapped


def _stack(trees):
    """Sequential chains' results, stacked on the host: ``jnp.stack`` (and ``x[i]`` below)
    would compile a small XLA program for every new shape, a dozen per run (0.3 s cold)."""
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


def _unstack(tree, n: int):
    host = jax.device_get(tree)
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], host) for i in range(n)]


class ChainGroupSampler:
    """Runs the chains of one rank; states are batched over the rank's chains, which run on
    all the rank's local devices (:mod:`~mpi_pymc.sampling.chain_devices`)."""

    def __init__(self, compiled: CompiledModel, config: RunConfig, devices=None):
        self.backend: SamplerBackend = backend_for(config.sampler)(compiled, config)
        self.compiled = compiled
        self.vectorized = config.chain_method == "vectorized"
        self.tune = config.tune
        self.chunk = min(config.chunk_draws, max(config.draws, config.tune, 1))
        self.group_size = config.adapt_group
        self.devices = tuple(jax.local_devices() if devices is None else devices)
        # With data shards the rank's devices hold one row shard each and run every chain
        # together (the log-density's shard_map): the chains are not split over them too.
        self.data_shards = config.data_shards
        self.chain_devices = self.devices[:1] if self.data_shards > 1 else self.devices
        self._cache: dict = {}
        self._data_on: dict = {}  # the model's data, placed once per device or mesh
        # Chains each device ran, counted from where the results were computed: the evidence
        # that every device worked (its dummies not counted).
        self.chains_per_device: Counter[int] = Counter()

    def placement(self, chains: int) -> ChainPlacement:
        """Which devices run this rank's ``chains`` (raises ``UserError`` for adaptation groups
        that do not divide evenly over them)."""
        return place_chains(chains, self.chain_devices, self.vectorized, self.group_size)

    @property
    def warmup_in_chunks(self) -> bool:
        """Whether :meth:`warmup` advances ``n`` iterations (True) or the whole warmup."""
        return self.backend.warmup_in_chunks

    def _compiled_fn(self, name: str, fn, in_axes, placement: ChainPlacement | None = None):
        """jit (and vmap, when vectorized) ``fn`` once per name; vectorized, the vmapped block
        of chains runs on each device of the ``placement`` under ``shard_map``. (A sequential
        program is one jit: JAX compiles it once for each device its chains are placed on.)"""
        # One device runs the plain vmap (as before devices were split): a shard_map over one
        # device gave the same draws as over two no more than it did.
        mesh = placement if self.vectorized and placement and placement.used > 1 else None
        key = (name, mesh.devices if mesh is not None else None)
        if key not in self._cache:
            mapped = vmap_chains(fn, in_axes, self.group_size) if self.vectorized else fn
            if mesh is not None:
                mapped = shard_chains(mapped, in_axes, mesh)
            self._cache[key] = jax.jit(mapped)
        return self._cache[key]

    def _placed(self, args, target):
        """``args`` with the model's data moved to ``target`` (a device or a sharding) once,
        not at every call; the other shared arguments are scalars that follow."""
        if target not in self._data_on:
            self._data_on[target] = jax.device_put(self.compiled.data, target)
        return [self._data_on[target] if arg is self.compiled.data else arg for arg in args]

    def _map_chains(self, name: str, fn, in_axes, batched_args, shared_args):
        """Apply a per-chain function to every chain of the group, by the chosen method, on
        every device the group's :meth:`placement` uses."""
        count = jax.tree_util.tree_leaves(batched_args[0])[0].shape[0]
        placement = self.placement(count)
        mapped = self._compiled_fn(name, fn, in_axes, placement)
        if self.vectorized:
            if placement.used == 1:
                self.chains_per_device[placement.devices[0].id] += count
                return mapped(*batched_args, *shared_args)
            batched = pad_chains(list(batched_args), placement.padded)
            batched = jax.device_put(batched, placement.chain_sharding())
            out = mapped(*batched, *self._placed(shared_args, placement.replicated()))
            for shard in jax.tree_util.tree_leaves(out)[0].addressable_shards:
                real = range(count)[shard.index[0]] if shard.index else range(count)
                self.chains_per_device[shard.device.id] += len(real)
            if placement.padded == count:
                return out
            return jax.tree_util.tree_map(lambda x: x[:count], out)  # the dummies dropped
        per_chain = [_unstack(arg, count) for arg in batched_args]
        if placement.used == 1:
            self.chains_per_device[placement.devices[0].id] += count
            return _stack([mapped(*args, *shared_args) for args in zip(*per_chain, strict=True)])
        # Every call is dispatched before any result is awaited (_stack), so the devices run
        # their chains side by side.
        results = []
        for i, args in enumerate(zip(*per_chain, strict=True)):
            device = placement.device_of(i)
            result = mapped(*jax.device_put(args, device), *self._placed(shared_args, device))
            for ran_on in jax.tree_util.tree_leaves(result)[0].devices():
                self.chains_per_device[ran_on.id] += 1
            results.append(result)
        return _stack(results)

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

    def metric_ranks(self, state) -> np.ndarray | None:
        """Per chain, the low-rank directions its adapted metric uses (0: diagonal), or None for
        a sampler without the project's metric (numpyro, blackjax: diagonal)."""
        metric = getattr(state, "metric", None)
        if metric is None:
            return None
        return np.sum(np.asarray(metric.values) != 1.0, axis=-1).astype(np.int64)

    def _programs(self):
        """(name, function, in_axes) of the warmup and sampling programs."""
        if self.warmup_in_chunks:
            warmup = (
                "warmup",
                _warmup_steps(self.backend.warmup_step, self.backend.iteration, self.tune),
                (0, None, None),
            )
        else:
            warmup = ("warmup", self.backend.warmup, (0, None))
        sample = ("sample", _loop_steps(self.backend.step, self.chunk), (0, None, None))
        return warmup, sample

    @property
    def has_diagonal_program(self) -> bool:
        """Whether the metric may end warmup with no low-rank direction in use while its state
        holds low-rank columns (``auto``, ``low_rank``): then :meth:`sample` runs a program
        without them (``sample_diag``)."""
        kind = getattr(self.backend, "metric_kind", "diag")
        return kind in ("auto", "low_rank") and metrics.layout(kind, self.compiled.dimension)[0] > 0

    def _diagonal_program(self):
        return ("sample_diag", _loop_steps(_on_its_diagonal(self.backend.step), self.chunk),
                (0, None, None))  # fmt: skip

    def sampling_program(self, state) -> str:
        """The program :meth:`sample` runs for ``state``: ``sample_diag`` when every chain of
        the group kept the diagonal, else ``sample``."""
        ranks = self.metric_ranks(state) if self.has_diagonal_program else None
        return "sample_diag" if ranks is not None and not ranks.any() else "sample"

    def warmup(self, state, n: int):
        """Advance ``n`` warmup iterations (blackjax: the whole warmup at once)."""
        (name, fn, axes), _ = self._programs()
        if self.warmup_in_chunks:
            return self._map_chains(name, fn, axes, (state,), (n, self.compiled.data))
        return self._map_chains(name, fn, axes, (state,), (self.compiled.data,))

    def sample(self, state, n: int, program: str | None = None):
        """Advance ``n`` sampling iterations; return state, positions (k, n, D), stats (k, n).
        ``program``: ``sample`` or ``sample_diag`` (default: :meth:`sampling_program`)."""
        program = self.sampling_program(state) if program is None else program
        _, sample = self._programs()
        name, fn, axes = self._diagonal_program() if program == "sample_diag" else sample
        state, (positions, stats) = self._map_chains(
            name, fn, axes, (state,), (n, self.compiled.data)
        )
        positions = positions[:, :n]
        stats = {key: value[:, :n] for key, value in stats.items()}
        return state, positions, stats

    def program_names(self) -> list[str]:
        """The programs :meth:`precompile` can build, in the order a run first needs them.
        ``sample_diag`` too, though a run may not need it: compiled while another rank (or
        thread) compiles the warmup, it costs no time where compiling it later would (1.6 s of
        eight schools' sampling phase on this project's 2-core VM, against none)."""
        diagonal = ["sample_diag"] if self.has_diagonal_program else []
        return (["warmup"] if self.tune else []) + ["sample", *diagonal]

    def abstract_state(self, chains: int):
        """Shapes and dtypes of the state :meth:`init` makes for ``chains`` chains (batched when
        vectorized, one chain's otherwise), without running or compiling anything."""
        dimension = self.compiled.dimension
        dtype = np.asarray(self.compiled.initial_flat).dtype
        batch = (chains,) if self.vectorized else ()
        keys = jax.ShapeDtypeStruct((*batch, 2), jnp.uint32)
        positions = jax.ShapeDtypeStruct((*batch, dimension), dtype)
        mapped = self._compiled_fn("init", self.backend.init, (0, 0, None))
        return jax.eval_shape(mapped, keys, positions, self.compiled.data)

    def precompile(
        self,
        state,
        names: list[str] | None = None,
        abstract: bool = False,
        chains: int | None = None,
    ) -> None:
        """Compile (not run) the warmup and/or sampling programs, filling JAX's persistent cache.

        In a run, ranks 0 and 1 compile one program each, side by side, and every rank then
        loads both from the cache instead of compiling them again. ``abstract``: ``state`` is
        :meth:`abstract_state`, so this can run while :meth:`init` computes the real one.
        ``chains``: the rank's chain count (read from ``state`` when it is batched), which
        decides the devices the programs are compiled for.
        """
        if chains is None:
            batched = self.vectorized or not abstract
            chains = jax.tree_util.tree_leaves(state)[0].shape[0] if batched else 1
        placement = self.placement(chains)
        example = state if (self.vectorized or abstract) else _unstack(state, 1)[0]
        (w_name, w_fn, w_axes), (s_name, s_fn, s_axes) = self._programs()
        chunk = jnp.asarray(self.chunk)
        names = self.program_names() if names is None else names
        # Where the programs run: the mesh (vectorized), each device (sequential), or as is.
        targets: list[tuple[Any, Any, Any]]
        if self.vectorized and placement.used > 1:
            targets = [(pad_chains(example, placement.padded), placement.chain_sharding(),
                        placement.replicated())]  # fmt: skip
        elif not self.vectorized and placement.used > 1:
            targets = [(example, SingleDeviceSharding(d), d) for d in placement.devices]
        else:
            targets = [(example, None, None)]
        lowered = []
        for example, where, data_where in targets:
            if where is not None:
                example = jax.tree_util.tree_map(
                    lambda x, w=where: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=w), example
                )
            data = self.compiled.data
            if data_where is not None:
                data = self._placed([data], data_where)[0]
            if self.tune and w_name in names:
                warmup_args = (chunk, data) if self.warmup_in_chunks else (data,)
                program = self._compiled_fn(w_name, w_fn, w_axes, placement)
                lowered.append(program.lower(example, *warmup_args))
            samplers = [(s_name, s_fn, s_axes), self._diagonal_program()]
            for name, fn, axes in samplers:
                if name in names:
                    program = self._compiled_fn(name, fn, axes, placement)
                    lowered.append(program.lower(example, chunk, data))
        # Tracing holds the GIL, XLA's compiler does not: programs compile at once.
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
        data = self.compiled.constrain_data
        per_chain = [fn(positions[i], data) for i in range(positions.shape[0])]
        return [np.stack([np.asarray(c[v]) for c in per_chain]) for v in range(len(per_chain[0]))]


INIT_BLOCK = 64  # chains whose starting points are checked in one call


class Starts(NamedTuple):
    """The chains' starting points and the JAX log-density there (and at the model's initial
    point): the translation check compares those with PyTensor's own, at no extra compile."""

    positions: np.ndarray  # (chains, D)
    logdensity: np.ndarray  # (chains,)
    initial_logdensity: float


def initial_positions(
    compiled: CompiledModel, model, root_seed: int, chains: range, max_tries: int = 10
) -> Starts:
    """Jittered starting points, one per chain, as PyMC's ``jitter+adapt_diag`` makes them.

    Chain ``c`` draws its jitter from its own seed stream, so its start does not depend on the
    chain group. Raises ``ValueError`` when the model's initial point itself has no finite
    log-density (naming the variables at fault).
    """
    from mpi_pymc.core.seeding import jitter_rng

    value_and_grad = jax.value_and_grad(compiled.logdensity)
    # Candidates are checked a block at a time (one vmapped call, not one call per chain: with
    # 1024 chains on a GPU the per-call round trips added seconds). One fixed block size, so
    # one compile.
    block = min(INIT_BLOCK, len(chains))
    check_block = jax.jit(jax.vmap(value_and_grad, in_axes=(0, None)))

    def finite_rows(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = np.empty(len(candidates), dtype=bool)
        logdensity = np.empty(len(candidates))
        for start in range(0, len(candidates), block):
            part = candidates[start : start + block]
            padded = np.concatenate([part, np.repeat(part[:1], block - len(part), axis=0)])
            values, grads = check_block(jnp.asarray(padded), compiled.data)
            values = np.asarray(values)[: len(part)]
            finite = np.isfinite(values) & np.all(np.isfinite(np.asarray(grads)[: len(part)]), 1)
            ok[start : start + len(part)] = finite
            logdensity[start : start + len(part)] = values
        return ok, logdensity

    base = compiled.initial_flat
    base_ok, base_logdensity = finite_rows(base[None, :])
    if not base_ok[0]:
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
    logdensity = np.full(len(rngs), base_logdensity[0])
    pending = np.arange(len(rngs))
    for _ in range(max_tries):
        if not len(pending):
            break
        jitters = [rngs[i].uniform(-1.0, 1.0, size=base.shape) for i in pending]
        candidates = np.stack([(base + jitter).astype(base.dtype) for jitter in jitters])
        ok, values = finite_rows(candidates)
        starts[pending[ok]] = candidates[ok]
        logdensity[pending[ok]] = values[ok]
        pending = pending[~ok]
    return Starts(starts, logdensity, float(base_logdensity[0]))
