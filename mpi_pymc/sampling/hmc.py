"""Adaptive jittered HMC (``--sampler hmc``): fixed-length trajectories whose length is learned
in warmup.

Iteration ``i`` integrates ``n = ceil(u_i T / eps)`` leapfrog steps, ``u_i = JITTER_LOW + (1 -
JITTER_LOW) v_i`` with ``v_i`` the base-2 van der Corput number of ``i + 1`` (in (0, 1)), then
accepts or rejects by the energy error. Each such kernel leaves the target invariant; the jitter
breaks the periodicities one fixed length has. The jitter of iteration ``i`` is the same number
for every chain, so vectorized chains with similar adapted settings step in lockstep, and a
leapfrog needs the gradient only (the log-density just at the trajectory's end).

Warmup (the first ``tune`` iterations) adapts, from the chain's own history:

- the step size by dual averaging (Hoffman & Gelman 2014) towards ``target_accept``: one
  averaging over the whole warmup (not restarted at each mass-matrix update, as Stan does). A
  warmup iteration takes no more steps than it would at ``eps_avg``, the averaged step so far:
  ``ceil(u_i T / max(eps, eps_avg))``, so vectorized chains do not wait for one whose iterate
  dipped;
- a diagonal mass matrix over Stan's windows (75 fast iterations, slow windows of 25, 50, 100,
  ... ending 50 before the end), regularised as Stan does;
- the trajectory length ``T``: each ``MEASURE_EVERY``-th warmup trajectory also runs on, past its
  jittered end, to its first no-U-turn point (``(x - x0) . p < 0`` or ``(x - x0) . p0 < 0``,
  NUTS's criterion in the mass matrix's metric), as eHMC (Wu, Stoehr & Robert 2018) measures
  path lengths. ``T`` is ``TRAJECTORY_SCALE`` times the mean U-turn time: a running mean during
  warmup, the mean over the last fast window for sampling.

Adaptation groups (``group_size``, the CLI's ``--adapt-group``) pool warmup over consecutive
chains: mean acceptance for the step size, mean U-turn time for ``T``, pooled window variance
for the mass matrix; a group then steps in lockstep with no waiting.

Everything is per chain and pure, so chains run vmapped or one after another, checkpoint as
their state, and (ungrouped) a chain's draws never depend on which chains share its rank. Why
this sampler, why these constants and what each choice measured: ``benchmarks/README.md``,
"The hmc sampler: design measurements".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from mpi_pymc.sampling import adaptation
from mpi_pymc.sampling import metric as metrics
from mpi_pymc.sampling.adaptation import warmup_schedule
from mpi_pymc.sampling.base import DIVERGENCE_ENERGY, GROUP_AXIS, ChunkedWarmup, tree_depth
from mpi_pymc.sampling.metric import Metric

if TYPE_CHECKING:
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.model.compile import CompiledModel

TRAJECTORY_SCALE = 1.0
JITTER_LOW = 0.3
# The running mean of U-turn times forgets with this horizon (iterations).
UTURN_HORIZON = 20
# Warmup measures the U-turn on every MEASURE_EVERY-th iteration (each measurement runs the
# trajectory on past its end).
MEASURE_EVERY = 4
INITIAL_STEPS = 4  # T before any U-turn is measured, in initial step sizes


class UturnTimes(NamedTuple):
    """U-turn times: running ``mean`` (of ``n``) and the ``final_sum`` (of ``final_n``) over the
    last fast window."""

    mean: jax.Array
    n: jax.Array
    final_sum: jax.Array
    final_n: jax.Array


class HmcState(NamedTuple):
    i: jax.Array
    position: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    rng_key: jax.Array
    log_step_size: jax.Array
    metric: Metric  # the inverse mass matrix: diagonal, or low-rank-plus-diagonal, or dense
    trajectory: jax.Array  # T, integration time
    # Warmup's three adaptations: step size, mass matrix, trajectory length. (Nested in the
    # order the flat fields da_*, wf_* and uturn_* had: a checkpoint is the state's leaves.)
    da: adaptation.DualAveraging
    wf: adaptation.Welford  # the window's variance (--metric diag)
    uturn: UturnTimes
    buffer: metrics.Buffer  # the window's draws and gradients (the other metrics; 0 rows for diag)


def van_der_corput(k):
    """Base-2 radical inverse of the positive integer ``k``: 1 -> .5, 2 -> .25, 3 -> .75 ..."""
    bits = jnp.arange(31, dtype=jnp.uint32)
    digits = (jnp.asarray(k, jnp.uint32)[..., None] >> bits) & 1
    return jnp.sum(digits * (0.5 ** (bits + 1.0)), axis=-1)


def _turned(position, momentum, x, p):
    """NUTS's no-U-turn criterion between the start and ``(x, p)``, in the mass matrix's metric."""
    return (jnp.vdot(x - position, p) < 0) | (jnp.vdot(x - position, momentum) < 0)


def _integrate(
    value_and_grad, grad_fn, position, momentum, grad, step_size, metric, n, max_steps, measure
):
    """Leapfrog ``n`` steps from ``(position, momentum)``; stop early at a non-finite gradient.

    Returns ``(x, p, logdensity, grad)`` after ``n`` steps (or where it stopped), the steps
    taken, and (``measure``, warmup) the steps to the first U-turn: the trajectory then runs on
    past ``n`` to it, or to ``max_steps``. Steps inside use the gradient alone and the ``n``-th
    the value too: HMC needs the log-density at the end only (see the module docstring).
    """

    def leapfrog(x, p, g, fn):
        p = p + 0.5 * step_size * g
        x = x + step_size * metrics.velocity(metric, p)
        out = fn(x)
        g = out[1] if isinstance(out, tuple) else out
        p = p + 0.5 * step_size * g
        return x, p, g, out

    def mark(j, x, p, uturn):
        if measure is False:
            return uturn
        stop = _turned(position, momentum, x, p) | (j >= max_steps)
        return jnp.where((uturn == 0) & stop, j, uturn)

    def run(carry, until, to_uturn):
        def cond(c):
            j, _, _, g, uturn = c
            go = (j < until) & jnp.all(jnp.isfinite(g))
            return go & (uturn == 0) if to_uturn else go

        def body(c):
            j, x, p, g, uturn = c
            x, p, g, _ = leapfrog(x, p, g, grad_fn)
            return j + 1, x, p, g, mark(j + 1, x, p, uturn)

        return jax.lax.while_loop(cond, body, carry)

    zero = jnp.zeros((), jnp.int32)
    j, x, p, g, uturn = run((zero, position, momentum, grad, zero), n - 1, False)
    x, p, g, (lp, _) = leapfrog(x, p, g, value_and_grad)
    j = j + 1
    uturn = mark(j, x, p, uturn)
    proposal = (x, p, lp, g)
    if measure is not False:
        uturn = jnp.where(measure, uturn, j)  # not measuring: nothing to run on for
        j_end, _, _, _, uturn = run((j, x, p, g, uturn), max_steps, True)
        uturn = jnp.where(uturn == 0, j_end, uturn)
    return proposal, j, uturn


def _energy_error(logdensity_old, kinetic_old, logdensity_new, kinetic_new):
    delta = (-logdensity_new + kinetic_new) - (-logdensity_old + kinetic_old)
    return jnp.where(jnp.isnan(delta), jnp.inf, delta)


def find_step_size(value_and_grad, position, logdensity, grad, metric, key, max_tries=100):
    """Stan's heuristic: double or halve from 1 until one leapfrog's acceptance crosses 0.5."""
    momentum = metrics.momentum(metric, jax.random.normal(key, position.shape, position.dtype))
    kinetic = metrics.kinetic(metric, momentum)

    def log_accept(step_size):
        p = momentum + 0.5 * step_size * grad
        x = position + step_size * metrics.velocity(metric, p)
        lp, g = value_and_grad(x)
        p = p + 0.5 * step_size * g
        delta = _energy_error(logdensity, kinetic, lp, metrics.kinetic(metric, p))
        return -delta

    one = jnp.ones((), position.dtype)
    direction = jnp.where(log_accept(one) > jnp.log(0.5), 2.0, 0.5).astype(position.dtype)

    def cond(carry):
        tries, step_size = carry
        # Doubling: stop before the step that falls below 0.5; halving: at the first above it.
        value = log_accept(step_size * jnp.maximum(direction, 1.0))
        crossed = jnp.where(direction > 1, value < jnp.log(0.5), value > jnp.log(0.5))
        return (tries < max_tries) & ~crossed

    _, step_size = jax.lax.while_loop(cond, lambda c: (c[0] + 1, c[1] * direction), (0, one))
    return jnp.clip(step_size, 1e-10, 1e10)


class AdaptiveHmc(ChunkedWarmup):
    """The per-chain kernel: ``init``, ``step`` and ``warmup_step`` over an :class:`HmcState`; a
    :class:`~mpi_pymc.sampling.base.SamplerBackend` (``--sampler hmc``).

    ``group_size`` > 1 pools warmup across an adaptation group of that many chains: the code is
    still per chain, but must then run under a ``vmap`` over the group with ``axis_name=
    GROUP_AXIS``. Every chain of a group adapts from the group's means — acceptance for the
    step size, U-turn times for ``T``, and the pooled position variance of the window for the
    mass matrix — so the chains of a group share one step size, one mass matrix and one ``T``,
    and take the same number of leapfrogs at every iteration: vectorized, no chain waits for
    another. A chain's draws then depend on the other chains of its group (not on the ranks).
    """

    def __init__(
        self,
        logdensity,
        tune: int,
        target_accept: float,
        max_steps: int,
        group_size: int = 1,
        metric: str = "diag",
    ):
        self.logdensity = logdensity
        # auto: the low-rank correction where an adaptation group pools its windows (at least
        # 4 draws per chain, G x 4 in all: enough for the Gaussian check of every direction);
        # a chain alone keeps Stan's diagonal (hmc has no trial window, as NUTS's auto has).
        self.metric_kind = "diag" if metric == "auto" and group_size == 1 else metric
        self.tune = tune
        self.target_accept = target_accept
        self.max_steps = max_steps
        self.group_size = group_size
        self.schedule = warmup_schedule(tune)
        rows = metrics.layout(metric, 1, group_size)[1]
        self.pushes = adaptation.buffer_pushes(self.schedule, rows)

    @classmethod
    def from_config(cls, compiled: CompiledModel, config: RunConfig) -> AdaptiveHmc:
        return cls(
            compiled.logdensity,
            tune=config.tune,
            target_accept=config.target_accept,
            max_steps=2**config.max_tree_depth,
            group_size=config.adapt_group,
            metric=config.metric,
        )

    def iteration(self, state: HmcState):
        return state.i

    def _group_mean(self, value):
        """The mean of ``value`` over the chain's adaptation group (itself when ungrouped)."""
        return jax.lax.pmean(value, GROUP_AXIS) if self.group_size > 1 else value

    def init(self, key, position, data) -> HmcState:
        value_and_grad = jax.value_and_grad(lambda x: self.logdensity(x, data))
        logdensity, grad = value_and_grad(position)
        key, search_key = jax.random.split(key)
        k, rows = metrics.layout(self.metric_kind, position.size, self.group_size)
        metric = metrics.identity(position.size, k, position.dtype)
        step_size = find_step_size(value_and_grad, position, logdensity, grad, metric, search_key)
        if self.group_size > 1:  # the group starts from its chains' geometric mean
            step_size = jnp.exp(self._group_mean(jnp.log(step_size)))
        zero = jnp.zeros((), position.dtype)
        da, wf = adaptation.start(position, step_size)
        return HmcState(
            i=jnp.zeros((), jnp.int32),
            position=position,
            logdensity=logdensity,
            grad=grad,
            rng_key=key,
            log_step_size=jnp.log(step_size),
            metric=metric,
            trajectory=INITIAL_STEPS * step_size,
            da=da,
            wf=wf,
            uturn=UturnTimes(mean=zero, n=zero, final_sum=zero, final_n=zero),
            buffer=metrics.empty_buffer(position.size, rows, position.dtype),
        )

    def pooled_variance(self, count, mean, m2):
        """The window's position variance and its draw count, over the adaptation group: the
        chains' sums of squares about the group mean, so spread between chains counts too.
        Ungrouped this is the chain's own ``m2 / (count - 1)``, exactly."""
        group_mean = self._group_mean(mean)
        total_m2 = self.group_size * self._group_mean(m2 + count * (mean - group_mean) ** 2)
        total = self.group_size * count
        return total_m2 / jnp.maximum(total - 1.0, 1.0), total

    def steps_for(self, state: HmcState):
        """Leapfrog steps of this iteration: ``ceil(u_i T / max(eps, eps_avg))`` within ``[1,
        max_steps]``, ``eps_avg`` the averaged step so far (in sampling ``eps == eps_avg``)."""
        u = JITTER_LOW + (1.0 - JITTER_LOW) * van_der_corput(state.i + 1)
        step_size = jnp.exp(state.log_step_size)
        averaged = jnp.where(state.da.n > 0, jnp.exp(state.da.log_avg), step_size)
        n = jnp.ceil(
            u.astype(step_size.dtype) * state.trajectory / jnp.maximum(step_size, averaged)
        )
        return jnp.clip(n, 1, self.max_steps).astype(jnp.int32)

    def transition(self, state: HmcState, data, measure):
        """Move once: ``(state, stats, uturn_time)``, ``uturn_time`` the integration time to the
        trajectory's first U-turn when ``measure`` (warmup), else its end."""
        key, momentum_key, accept_key = jax.random.split(state.rng_key, 3)
        x, metric = state.position, state.metric
        step_size = jnp.exp(state.log_step_size)
        momentum = metrics.momentum(metric, jax.random.normal(momentum_key, x.shape, x.dtype))
        kinetic = metrics.kinetic(metric, momentum)
        (x_new, p_new, lp_new, g_new), steps, uturn = _integrate(
            jax.value_and_grad(lambda y: self.logdensity(y, data)),
            jax.grad(lambda y: self.logdensity(y, data)),
            x,
            momentum,
            state.grad,
            step_size,
            metric,
            self.steps_for(state),
            self.max_steps,
            measure,
        )
        kinetic_new = metrics.kinetic(metric, p_new)
        delta = _energy_error(state.logdensity, kinetic, lp_new, kinetic_new)
        accept_prob = jnp.minimum(1.0, jnp.exp(-delta))
        accepted = jnp.log(jax.random.uniform(accept_key, (), x.dtype)) < -delta
        moved = state._replace(
            i=state.i + 1,
            position=jnp.where(accepted, x_new, x),
            logdensity=jnp.where(accepted, lp_new, state.logdensity),
            grad=jnp.where(accepted, g_new, state.grad),
            rng_key=key,
        )
        stats = {
            "lp": moved.logdensity,
            "diverging": delta > DIVERGENCE_ENERGY,
            "energy": jnp.where(accepted, -lp_new + kinetic_new, -state.logdensity + kinetic),
            "step_size": step_size,
            "n_steps": steps,
            "acceptance_rate": accept_prob,
            "tree_depth": tree_depth(steps),
        }
        return moved, stats, uturn.astype(x.dtype) * step_size

    def step(self, state: HmcState, data):
        """A sampling iteration: the adapted settings stay as they are."""
        moved, stats, _ = self.transition(state, data, measure=False)
        return moved, moved.position, stats

    def warmup_step(self, state: HmcState, data):
        """A warmup iteration (``state.i < tune``): move, measure the U-turn, adapt."""
        measure = state.i % MEASURE_EVERY == 0
        moved, stats, uturn_time = self.transition(state, data, measure=measure)
        moved = self.adapt(state, moved, stats["acceptance_rate"], uturn_time, measure)
        return moved, moved.position, stats

    def adapt(self, old: HmcState, new: HmcState, accept_prob, uturn_time, measured):
        """Warmup iteration ``old.i`` done: update step size, mass matrix and trajectory."""
        dtype = new.position.dtype
        i = old.i
        index = jnp.minimum(i, self.tune - 1)
        slow = jnp.asarray(self.schedule.slow)[index]
        window_end = jnp.asarray(self.schedule.window_end)[index]
        final = i >= self.schedule.final_start
        last = i == self.tune - 1
        zero = jnp.zeros((), dtype)

        # Dual averaging of the log step size.
        count, hbar, log_step, log_avg = adaptation.dual_averaging(
            old.da, self._group_mean(accept_prob), self.target_accept
        )

        # Running mean of U-turn times, and their mean over the last fast window.
        uturn_time = self._group_mean(uturn_time)
        uturn_count = old.uturn.n + jnp.where(measured, 1.0, 0.0)
        uturn_mean = jnp.where(
            measured,
            old.uturn.mean
            + (uturn_time - old.uturn.mean) / jnp.clip(uturn_count, 1.0, UTURN_HORIZON),
            old.uturn.mean,
        )
        final_sum = old.uturn.final_sum + jnp.where(final & measured, uturn_time, 0.0)
        final_count = old.uturn.final_n + jnp.where(final & measured, 1.0, 0.0)

        # Welford over the slow window; at its end the mass matrix updates and the running mean
        # of U-turn times starts again (the metric changed).
        wf = adaptation.welford(old.wf, new.position, slow)
        push = jnp.asarray(self.pushes)[index] & (i < self.tune)
        buffer = metrics.push(old.buffer, new.position, new.grad, push)
        metric = self._estimate(wf, buffer, old.metric, window_end)
        restart = window_end

        trajectory = TRAJECTORY_SCALE * uturn_mean
        final_trajectory = TRAJECTORY_SCALE * final_sum / jnp.maximum(final_count, 1.0)
        return new._replace(
            log_step_size=jnp.where(last, log_avg, log_step).astype(dtype),
            metric=metric,
            trajectory=jnp.where(last & (final_count > 0), final_trajectory, trajectory).astype(
                dtype
            ),
            da=old.da._replace(
                hbar=hbar.astype(dtype), log_avg=log_avg.astype(dtype), n=count.astype(dtype)
            ),
            wf=adaptation.restarted(wf, restart, dtype),
            uturn=UturnTimes(
                mean=uturn_mean.astype(dtype),
                n=jnp.where(restart, zero, uturn_count).astype(dtype),
                final_sum=final_sum.astype(dtype),
                final_n=final_count.astype(dtype),
            ),
            buffer=metrics.restarted(buffer, restart),
        )

    def _estimate(self, wf, buffer, old: Metric, window_end) -> Metric:
        """At a window's end, the group's metric: the pooled window variance regularised as
        Stan does (``diag``), or the Fisher estimate from every buffered draw of the group (the
        other metrics); ``old`` elsewhere."""
        if self.metric_kind == "diag":
            variance, n = self.pooled_variance(wf.n, wf.mean, wf.m2)
            regularised = adaptation.regularised(variance, n)
            return old._replace(inv_diag=jnp.where(window_end, regularised, old.inv_diag))

        def gather(value):
            return jax.lax.all_gather(value, GROUP_AXIS).reshape(-1, *value.shape[1:])

        pooled = gather if self.group_size > 1 else None
        variance, n = self.pooled_variance(wf.n, wf.mean, wf.m2)
        base = adaptation.regularised(variance, n)
        return jax.lax.cond(
            window_end,
            lambda b, m: metrics.window_estimate(self.metric_kind, b, m, pooled, base),
            lambda b, m: m,
            buffer,
            old,
        )
