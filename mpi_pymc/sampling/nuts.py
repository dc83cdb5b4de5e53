"""The project's own NUTS: multinomial trajectories, Stan's U-turn criterion and Stan's warmup.

Why not numpyro's or blackjax's NUTS: both build a tree as nested loops (a loop over tree
depths, a loop over a subtree's leaves, a loop over the U-turn checkpoints of every leaf) and
draw a random number per leaf with its own key. Here one transition is ONE ``while_loop`` whose
body is one leapfrog step plus a few fused vector operations. Measured
(``benchmarks/README.md``): on an H200 a leapfrog costs 1.13-1.31 gradient evaluations against
numpyro's 1.34-1.67; on a CPU both sit within the noise of one gradient, where the log-density
value, not the bookkeeping, is what a leapfrog pays for. The structure:

- the tree grows by doubling: subtree ``j`` is ``2**j`` leapfrogs from the end chosen by the
  ``j``-th random direction, so the loop only needs the leaf index within the current subtree;
- inside a subtree the proposal is drawn progressively (leaf ``k`` replaces it with probability
  ``w_k / sum(w)``: a multinomial draw over the subtree); at the end of a valid subtree it
  replaces the tree's proposal with probability ``min(1, W_subtree / W_tree)``: Stan's biased
  progressive sampling;
- the U-turn checks of every sub-subtree that ends at a leaf are one masked ``(depth, D)``
  product against checkpoints stored at the even leaves (the same checkpoint scheme as numpyro's
  iterative NUTS), not a loop;
- all random numbers of a transition (momentum, directions, leaf and subtree uniforms, the next
  key and a warmup iteration's step-size search) come from one threefry call on its key, drawn
  before the loop (:func:`draw_randoms`).

A subtree that U-turns or diverges (energy error above ``DIVERGENCE_ENERGY``) ends the
transition and contributes nothing to the proposal, as in Stan. After each valid subtree the
whole trajectory is checked with the generalised criterion ``rho . p#_minus > 0`` and ``rho .
p#_plus > 0``, ``rho`` the span's momentum sum with its two end points counted half, as
numpyro and blackjax compute it (with every point counted whole, trees came out 3-5% longer
than theirs at the same step size).

Warmup is Stan's windowed adaptation: step size by dual averaging towards ``target_accept``
(restarted at ``mu = log(10 eps)`` after each mass-matrix update, with the step size searched
again), a diagonal mass matrix from the position variance of each slow window (regularised as
Stan does), and the averaged step size for sampling. ``tune`` is a cap, not a count: once a
slow window of at least ``CONVERGED_WINDOW`` draws gives a metric that agrees with the one the
window ran under (within ``CONVERGED_RMS``, or within what estimation noise alone explains for
two windows of their sizes, ``CONVERGED_NOISE``), the chain skips its remaining slow windows
and runs the terminal window (Stan's last 50 iterations of step-size adaptation) straight away;
its iteration counter jumps so that warmup ends at ``tune``. Stan's later windows are the
longest (500 of 1000 iterations), and they re-estimate a metric that has stopped changing. The
decision is the chain's own, so its draws do not depend on the other chains or the ranks.
Before the first mass-matrix update (the metric is still the identity) trees stop at depth
``EARLY_DEPTH``: on an ill-scaled target they would otherwise run to ``max_depth`` there and
take most of a run's gradients (measured in ``benchmarks/nuts_targets.py``).

Everything is per chain and pure (``init(key, position, data)``, ``step(state, data)``), so
chains run vmapped or one after another and a checkpoint is the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpi_pymc.sampling import adaptation, metric_trial
from mpi_pymc.sampling import metric as metrics
from mpi_pymc.sampling.adaptation import warmup_schedule
from mpi_pymc.sampling.base import DIVERGENCE_ENERGY, ChunkedWarmup, tree_depth
from mpi_pymc.sampling.batched_cond import cond_any
from mpi_pymc.sampling.metric import Metric

if TYPE_CHECKING:
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.model.compile import CompiledModel

# Warmup ends early (the remaining slow windows are skipped, the terminal window still runs)
# when a slow window of at least CONVERGED_WINDOW draws gives a metric within CONVERGED_RMS
# (root mean square of the log ratio over parameters) of the metric the window ran with...
# Measured on the five targets of benchmarks/nuts_targets.py, 3 seeds (benchmarks/README.md):
# ending after the 100-draw window when the change is within noise cut warmup gradients by
# 8-37% with the same sampling cost per draw (the metric is as good), bulk ESS per gradient
# +9-20% on four targets; the heavy-tailed one never ends early.
CONVERGED_WINDOW = 100
CONVERGED_RMS = 0.3
# ...or within CONVERGED_NOISE times the change that estimation noise alone gives two window
# variances of n_old and n_new draws: sqrt(2 / n_old + 2 / n_new) (0: the fixed bound only).
CONVERGED_NOISE = 1.5
# Until the first mass-matrix update (the metric is still the identity) trees are capped at
# this depth: an ill-scaled target would otherwise run trees of up to 2**max_depth - 1
# leapfrogs there, most of the gradients of a whole run. 0: no cap.
EARLY_DEPTH = 6
# Stan's step-size search doubles or halves until one leapfrog's acceptance crosses this.
SEARCH_ACCEPT = 0.8
SEARCH_MAX_TRIES = 50


class NutsState(NamedTuple):
    i: jax.Array
    position: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    rng_key: jax.Array
    log_step_size: jax.Array
    metric: Metric  # the inverse mass matrix: diagonal, or low-rank-plus-diagonal, or dense
    # Warmup's adaptation of the step size and of the mass matrix. (Nested in the order the
    # flat fields da_* and wf_* had: a checkpoint is the state's leaves, in order.)
    da: adaptation.DualAveraging
    wf: adaptation.Welford  # the window's variance (--metric diag)
    buffer: metrics.Buffer  # the window's draws and gradients (the other metrics; 0 rows for diag)
    trial: metric_trial.Trial  # --metric auto: the low-rank metric's trial against the diagonal


class _Point(NamedTuple):
    x: jax.Array
    p: jax.Array
    grad: jax.Array


class _Proposal(NamedTuple):
    x: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    weight: jax.Array  # log of the multinomial weight, -H


class _Tree(NamedTuple):
    n: jax.Array  # leapfrogs so far
    depth: jax.Array  # current subtree holds 2**depth leaves
    leaf: jax.Array  # leaf index within the current subtree
    forward: jax.Array  # direction of the current subtree
    edge: _Point  # the end being extended
    other: _Point  # the opposite end of the trajectory
    proposal: _Proposal
    log_weight: jax.Array  # log sum of the weights of the merged subtrees
    rho: jax.Array  # momentum sum of the merged subtrees
    sub_proposal: _Proposal
    sub_log_weight: jax.Array
    sub_rho: jax.Array
    ckpt_p: jax.Array  # (max_depth, D) momentum at the checkpointed even leaves
    ckpt_sharp: jax.Array  # (max_depth, D) their velocities, M^-1 p
    ckpt_rho: jax.Array  # (max_depth, D) subtree momentum sum before those leaves
    accept_sum: jax.Array
    diverging: jax.Array
    done: jax.Array


def _popcount(k):
    return jax.lax.population_count(k)


def _centred(rho, p_one_end, p_other_end):
    """The momentum sum of a span with its two end points counted half (the trapezoidal sum
    numpyro's and blackjax's criterion use, after Stan's)."""
    return rho - 0.5 * (p_one_end + p_other_end)


class Randoms(NamedTuple):
    """Every random number one transition (and a warmup iteration's step-size search) needs."""

    next_key: jax.Array  # raw uint32[2] key of the chain's next transition
    momentum: jax.Array  # (D,) standard normal
    forward: jax.Array  # (max_depth,) bool: the direction of each doubling
    log_u_leaf: jax.Array  # (2**max_depth,) log uniform: the multinomial draw within a subtree
    log_u_subtree: jax.Array  # (max_depth,) log uniform: taking a subtree's proposal
    search: jax.Array  # (D,) standard normal for the step-size search ((0,) when not asked)


def draw_randoms(key, dim: int, max_depth: int, dtype, search: bool = False) -> Randoms:
    """All of a transition's random numbers from ONE threefry call on ``key``.

    ``jax.random.split`` + ``normal`` + ``bernoulli`` + two ``uniform`` calls compiled to five
    threefry programs per transition; XLA took 0.5-0.7 s to compile them on this project's CPU
    (``benchmarks/README.md``), in each of the init, warmup and sampling programs. Here one call
    draws words (64-bit for float64, 32-bit for float32): the first becomes the next key, each
    other one a uniform on (0, 1) (its top 53 or 24 bits, offset by half a step so that neither
    end is reached), and the first uniforms normals by the inverse normal CDF.
    """
    dtype = jnp.dtype(dtype)
    normals = dim * (2 if search else 1)
    uniforms = normals + max_depth + 2**max_depth + max_depth
    if dtype == jnp.float64:
        # 64-bit words (x64 is on for float64 runs): half the threefry work of 32-bit ones.
        bits = jax.random.bits(key, (1 + uniforms,), jnp.uint64)
        next_key = jax.lax.bitcast_convert_type(bits[0], jnp.uint32)
        u = ((bits[1:] >> 11).astype(dtype) + 0.5) * (1.0 / 9007199254740992.0)
    else:
        bits = jax.random.bits(key, (2 + uniforms,), jnp.uint32)
        next_key = bits[:2]
        u = ((bits[2:] >> 8).astype(dtype) + 0.5) * (1.0 / 16777216.0)
    z = jax.scipy.special.ndtri(u[:normals])
    rest = u[normals:]
    return Randoms(
        next_key=next_key,
        momentum=z[:dim],
        forward=rest[:max_depth] < 0.5,
        log_u_leaf=jnp.log(rest[max_depth : max_depth + 2**max_depth]),
        log_u_subtree=jnp.log(rest[max_depth + 2**max_depth :]),
        search=z[dim:],
    )


def transition(
    value_and_grad,
    key,
    position,
    logdensity,
    grad,
    step_size,
    metric: Metric,
    max_depth,
    depth_limit=None,
):
    """One NUTS transition from ``position``; returns the new point and the stats Stan reports.

    ``value_and_grad(x) -> (logdensity, grad)``. ``key`` is a raw PRNG key or the transition's
    :class:`Randoms`. ``max_depth`` bounds the tree at ``2**max_depth - 1`` leapfrogs;
    ``depth_limit`` (a traced value up to ``max_depth``) may stop it earlier. ``metric`` is the
    inverse mass matrix (:class:`~mpi_pymc.sampling.metric.Metric`).
    """
    depth_limit = max_depth if depth_limit is None else depth_limit
    dtype = position.dtype
    if isinstance(key, Randoms):
        randoms = key
    else:
        randoms = draw_randoms(key, position.size, max_depth, dtype)
    p0 = metrics.momentum(metric, randoms.momentum.astype(dtype))
    w0 = logdensity - metrics.kinetic(metric, p0)
    forward = randoms.forward
    log_u_leaf = randoms.log_u_leaf
    log_u_subtree = randoms.log_u_subtree
    rows = jnp.arange(max_depth)
    zero_int = jnp.zeros((), jnp.int32)
    minus_inf = jnp.asarray(-jnp.inf, dtype)
    start = _Point(position, p0, grad)
    proposal = _Proposal(position, logdensity, grad, w0)
    checkpoints = jnp.zeros((max_depth, *position.shape), dtype)

    def body(t: _Tree) -> _Tree:
        eps = jnp.where(t.forward, step_size, -step_size)
        p = t.edge.p + 0.5 * eps * t.edge.grad
        x = t.edge.x + eps * metrics.velocity(metric, p)
        lp, g = value_and_grad(x)
        p = p + 0.5 * eps * g
        p_sharp = metrics.velocity(metric, p)
        w = lp - 0.5 * jnp.vdot(p_sharp, p)
        w = jnp.where(jnp.isnan(w), -jnp.inf, w)
        diverging = w0 - w > DIVERGENCE_ENERGY
        accept_sum = t.accept_sum + jnp.minimum(1.0, jnp.exp(w - w0))

        # Progressive multinomial draw within the subtree.
        first = t.leaf == 0
        sub_log_weight = jnp.logaddexp(jnp.where(first, minus_inf, t.sub_log_weight), w)
        take_leaf = log_u_leaf[t.n] < w - sub_log_weight
        sub_proposal = jax.tree_util.tree_map(
            lambda new, old: jnp.where(take_leaf, new, old), _Proposal(x, lp, g, w), t.sub_proposal
        )
        sub_rho = jnp.where(first, 0.0, t.sub_rho) + p

        # Checkpoints at even leaves; at an odd leaf, check every sub-subtree ending here.
        odd = (t.leaf & 1) == 1
        idx_max = _popcount(t.leaf >> 1)
        ends = _popcount(t.leaf ^ (t.leaf + 1)) - 1  # trailing ones: sub-subtrees ending here
        idx_min = idx_max - ends + 1
        ckpt_p = jnp.where(odd, t.ckpt_p, t.ckpt_p.at[idx_max].set(p))
        ckpt_sharp = jnp.where(odd, t.ckpt_sharp, t.ckpt_sharp.at[idx_max].set(p_sharp))
        ckpt_rho = jnp.where(odd, t.ckpt_rho, t.ckpt_rho.at[idx_max].set(sub_rho - p))
        spans = _centred(sub_rho - ckpt_rho, ckpt_p, p)
        span_turned = (spans @ p_sharp <= 0) | (jnp.sum(spans * ckpt_sharp, axis=-1) <= 0)
        checked = odd & (rows >= idx_min) & (rows <= idx_max)
        invalid = diverging | jnp.any(checked & span_turned)

        # A complete, valid subtree merges into the trajectory.
        complete = t.leaf + 1 == (1 << t.depth)
        merge = complete & ~invalid
        take_subtree = merge & (log_u_subtree[t.depth] < sub_log_weight - t.log_weight)
        proposal = jax.tree_util.tree_map(
            lambda new, old: jnp.where(take_subtree, new, old), sub_proposal, t.proposal
        )
        log_weight = jnp.where(merge, jnp.logaddexp(t.log_weight, sub_log_weight), t.log_weight)
        rho = jnp.where(merge, t.rho + sub_rho, t.rho)
        other_sharp = metrics.velocity(metric, t.other.p)
        centred = _centred(rho, t.other.p, p)
        turned = (jnp.vdot(centred, p_sharp) <= 0) | (jnp.vdot(centred, other_sharp) <= 0)
        depth = t.depth + complete
        done = invalid | (merge & (turned | (depth >= depth_limit)))

        # The next subtree grows from the end its direction names.
        edge = _Point(x, p, g)
        next_forward = forward[jnp.minimum(depth, max_depth - 1)]
        swap = complete & (next_forward != t.forward)
        new_edge = jax.tree_util.tree_map(lambda a, b: jnp.where(swap, b, a), edge, t.other)
        new_other = jax.tree_util.tree_map(lambda a, b: jnp.where(swap, a, b), edge, t.other)
        return _Tree(
            n=t.n + 1,
            depth=depth,
            leaf=jnp.where(complete, 0, t.leaf + 1),
            forward=jnp.where(complete, next_forward, t.forward),
            edge=new_edge,
            other=new_other,
            proposal=proposal,
            log_weight=log_weight,
            rho=rho,
            sub_proposal=sub_proposal,
            sub_log_weight=sub_log_weight,
            sub_rho=sub_rho,
            ckpt_p=ckpt_p,
            ckpt_sharp=ckpt_sharp,
            ckpt_rho=ckpt_rho,
            accept_sum=accept_sum,
            diverging=diverging,
            done=done,
        )

    tree = _Tree(
        n=zero_int,
        depth=zero_int,
        leaf=zero_int,
        forward=forward[0],
        edge=start,
        other=start,
        proposal=proposal,
        log_weight=w0,
        rho=p0,
        sub_proposal=proposal,
        sub_log_weight=minus_inf,
        sub_rho=jnp.zeros_like(position),
        ckpt_p=checkpoints,
        ckpt_sharp=checkpoints,
        ckpt_rho=checkpoints,
        accept_sum=jnp.zeros((), dtype),
        diverging=jnp.zeros((), bool),
        done=jnp.zeros((), bool),
    )
    tree = jax.lax.while_loop(lambda t: ~t.done, body, tree)
    stats = {
        "diverging": tree.diverging,
        "energy": -tree.proposal.weight,
        "n_steps": tree.n,
        "acceptance_rate": tree.accept_sum / tree.n,
    }
    return tree.proposal, stats


def search_step_size(
    value_and_grad, normals, position, logdensity, grad, metric: Metric, step_size, active
):
    """Stan's step-size heuristic from ``step_size``: double (or halve) until one leapfrog's
    acceptance falls below (or rises above) ``SEARCH_ACCEPT``. Runs no leapfrog at all when
    ``active`` is false, so warmup can call it at every iteration (vmapped chains share the
    schedule, so they search at the same iterations). ``normals``: (D,) standard normal draws
    for the momentum."""
    p0 = metrics.momentum(metric, normals.astype(position.dtype))
    h0 = -logdensity + metrics.kinetic(metric, p0)
    threshold = jnp.log(SEARCH_ACCEPT)

    def log_accept(eps):
        p = p0 + 0.5 * eps * grad
        lp, g = value_and_grad(position + eps * metrics.velocity(metric, p))
        p = p + 0.5 * eps * g
        delta = h0 - (-lp + metrics.kinetic(metric, p))
        return jnp.where(jnp.isnan(delta), -jnp.inf, delta)

    def body(carry):
        tries, eps, up, _ = carry
        value = log_accept(eps)
        up = jnp.where(tries == 0, value > threshold, up)
        crossed = (tries > 0) & jnp.where(up, value <= threshold, value >= threshold)
        done = crossed | (tries + 1 >= SEARCH_MAX_TRIES)
        eps = jnp.where(done, eps, jnp.where(up, 2.0 * eps, 0.5 * eps))
        return tries + 1, eps, up, done

    start = (jnp.zeros((), jnp.int32), step_size, jnp.zeros((), bool), ~jnp.asarray(active, bool))
    _, eps, _, _ = jax.lax.while_loop(lambda c: ~c[3], body, start)
    return jnp.clip(eps, 1e-10, 1e10).astype(position.dtype)


class Nuts(ChunkedWarmup):
    """The per-chain kernel: ``init``, ``step`` (sampling) and ``warmup_step`` over
    :class:`NutsState`; a :class:`~mpi_pymc.sampling.base.SamplerBackend` (``--sampler nuts``)."""

    def __init__(
        self, logdensity, tune: int, target_accept: float, max_depth: int, metric: str = "diag"
    ):
        self.logdensity = logdensity
        self.metric_kind = metric
        self.tune = tune
        self.target_accept = target_accept
        self.max_depth = max_depth
        self.schedule = warmup_schedule(tune)
        ends = np.flatnonzero(self.schedule.window_end)
        # At each window end, the draws of the window before it (0 for the first window).
        self.previous_window = np.zeros(max(tune, 1))
        if len(ends):  # no slow window when tune < 20 (none at all with --tune 0)
            sizes = np.diff(np.concatenate([[int(np.argmax(self.schedule.slow)) - 1], ends]))
            self.previous_window[ends[1:]] = sizes[:-1]
        # Iterations before the first metric update (none when there is no slow window).
        self.early_until = int(ends[0]) + 1 if len(ends) and EARLY_DEPTH else 0
        self.pushes = adaptation.buffer_pushes(self.schedule, metrics.layout(metric, 1)[1])
        self.trial_plan = metric_trial.plan(self.schedule)

    @classmethod
    def from_config(cls, compiled: CompiledModel, config: RunConfig) -> Nuts:
        return cls(
            compiled.logdensity,
            tune=config.tune,
            target_accept=config.target_accept,
            max_depth=config.max_tree_depth,
            metric=config.metric,
        )

    def iteration(self, state: NutsState):
        return state.i

    def _value_and_grad(self, data):
        return jax.value_and_grad(lambda x: self.logdensity(x, data))

    def init(self, key, position, data) -> NutsState:
        """The chain's state before its first iteration. With warmup the step size is not yet
        searched: the first warmup iteration searches it (as it does after every mass-matrix
        update, ``da.n == 0``), so this program is one gradient, not a step-size search and a
        threefry draw of its own (it compiled in 0.5 s alone, 0.7-1.3 s on each of two ranks
        side by side; ``benchmarks/README.md``). Without warmup it searches here, as Stan does."""
        value_and_grad = self._value_and_grad(data)
        logdensity, grad = value_and_grad(position)
        k, rows = metrics.layout(self.metric_kind, position.size)
        metric = metrics.identity(position.size, k, position.dtype)
        step_size = jnp.ones((), position.dtype)
        if not self.tune:
            randoms = draw_randoms(key, position.size, 0, position.dtype, search=True)
            key = randoms.next_key.reshape(key.shape).astype(key.dtype)
            normals = randoms.search
            step_size = search_step_size(
                value_and_grad, normals, position, logdensity, grad, metric, step_size, True
            )
        da, wf = adaptation.start(position, step_size)
        return NutsState(
            i=jnp.zeros((), jnp.int32),
            position=position,
            logdensity=logdensity,
            grad=grad,
            rng_key=key,
            log_step_size=jnp.log(step_size),
            metric=metric,
            da=da,
            wf=wf,
            buffer=metrics.empty_buffer(position.size, rows, position.dtype),
            trial=metric_trial.start(position.dtype),
        )

    def _transition(self, state: NutsState, data, randoms=None, depth_limit=None):
        dtype = state.position.dtype
        if randoms is None:
            randoms = draw_randoms(state.rng_key, state.position.size, self.max_depth, dtype)
        step_size = jnp.exp(state.log_step_size)
        proposal, stats = transition(
            self._value_and_grad(data),
            randoms,
            state.position,
            state.logdensity,
            state.grad,
            step_size,
            state.metric,
            self.max_depth,
            depth_limit,
        )
        moved = state._replace(
            i=state.i + 1,
            position=proposal.x,
            logdensity=proposal.logdensity,
            grad=proposal.grad,
            rng_key=randoms.next_key.reshape(state.rng_key.shape).astype(state.rng_key.dtype),
        )
        stats = {**stats, "tree_depth": tree_depth(stats["n_steps"])}
        return moved, {"lp": proposal.logdensity, "step_size": step_size, **stats}

    def step(self, state: NutsState, data):
        """A sampling iteration: the adapted step size and mass matrix stay as they are."""
        moved, stats = self._transition(state, data)
        return moved, moved.position, stats

    def warmup_step(self, state: NutsState, data):
        """A warmup iteration: search the step size where the adaptation restarted (the first
        iteration, and the one after each mass-matrix update: ``da.n == 0``), move, then adapt
        as Stan does. Past ``tune`` (a chain whose warmup ended early, in a batch still
        adapting) it is a sampling step."""
        dtype = state.position.dtype
        randoms = draw_randoms(
            state.rng_key, state.position.size, self.max_depth, dtype, search=True
        )
        due = (state.da.n == 0) & (state.i < self.tune)
        searched = search_step_size(
            self._value_and_grad(data),
            randoms.search,
            state.position,
            state.logdensity,
            state.grad,
            state.metric,
            jnp.exp(state.log_step_size).astype(dtype),
            due,
        )
        # Dual averaging restarts from the searched step: mu = log(10 eps), as in Stan.
        state = state._replace(
            log_step_size=jnp.where(due, jnp.log(searched), state.log_step_size).astype(dtype),
            da=state.da._replace(
                mu=jnp.where(due, jnp.log(10.0 * searched), state.da.mu).astype(dtype)
            ),
        )
        early = state.i < self.early_until
        depth_limit = jnp.where(early, min(EARLY_DEPTH, self.max_depth), self.max_depth)
        moved, stats = self._transition(state, data, randoms, depth_limit)
        adapted = self._adapt(state, moved, stats)
        done = state.i >= self.tune
        adapted = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), moved, adapted)
        return adapted, moved.position, stats

    def _adapt(self, old: NutsState, new: NutsState, stats) -> NutsState:
        accept_prob = stats["acceptance_rate"]
        dtype = new.position.dtype
        index = jnp.minimum(old.i, self.tune - 1)
        slow = jnp.asarray(self.schedule.slow)[index]
        window_end = jnp.asarray(self.schedule.window_end)[index]
        last = old.i == self.tune - 1

        # Dual averaging of the log step size.
        count, hbar, log_step, log_avg = adaptation.dual_averaging(
            old.da, accept_prob, self.target_accept
        )

        # The window's estimate; at its end the mass matrix updates.
        wf = adaptation.welford(old.wf, new.position, slow)
        push = jnp.asarray(self.pushes)[index] & (old.i < self.tune)
        buffer = metrics.push(old.buffer, new.position, new.grad, push)
        trial = old.trial
        if self.metric_kind == "auto":
            measured = jnp.asarray(self.trial_plan.measured)[index]
            trial = metric_trial.record(trial, stats["n_steps"], stats["diverging"], measured)
        # Vectorized chains too compute the estimate only at a window's end (cond_any).
        estimated, trial, change = cond_any(
            window_end,
            self._estimate,
            lambda wf, buffer, old, trial, index: (old, trial, jnp.zeros((), dtype)),
            wf,
            buffer,
            old.metric,
            trial,
            index,
        )
        metric = jax.tree_util.tree_map(
            lambda a, b: jnp.where(window_end, a, b).astype(dtype), estimated, old.metric
        )
        previous = jnp.asarray(self.previous_window, dtype)[index]
        noise = jnp.sqrt(2.0 / jnp.maximum(previous, 1.0) + 2.0 / jnp.maximum(wf.n, 1.0))
        bound = jnp.maximum(CONVERGED_RMS, CONVERGED_NOISE * noise)
        converged = window_end & (previous > 0) & (wf.n >= CONVERGED_WINDOW) & (change < bound)
        if self.metric_kind == "auto":  # not before the trial has chosen the kind
            converged = converged & metric_trial.decided(trial)

        # After a metric update the averaging restarts (n = 0), and the next iteration searches
        # the step size again from the current iterate (warmup_step).
        zero = jnp.zeros((), dtype)
        log_step = jnp.where(last, log_avg, log_step)
        return new._replace(
            i=jnp.where(converged, max(self.schedule.final_start, 0), new.i),
            log_step_size=log_step.astype(dtype),
            metric=metric,
            da=adaptation.DualAveraging(
                mu=old.da.mu,
                hbar=jnp.where(window_end, zero, hbar).astype(dtype),
                log_avg=jnp.where(window_end, zero, log_avg).astype(dtype),
                n=jnp.where(window_end, zero, count).astype(dtype),
            ),
            wf=adaptation.restarted(wf, window_end, dtype),
            buffer=metrics.restarted(buffer, window_end),
            trial=trial,
        )

    def _estimate(self, wf, buffer: metrics.Buffer, old: Metric, trial, index):
        """At a window's end, the metric for the next window and the auto metric's trial:
        Stan's regularised variance (``diag``), the Fisher estimate from the window's buffered
        draws and gradients (``low_rank``, ``dense``; the old metric while the buffer holds
        fewer than 3 draws), or for ``auto`` the kind its trial chose (metric_trial); and how far
        it moved from ``old`` (:func:`~mpi_pymc.sampling.metric.change`)."""
        chosen, trial = self._chosen(wf, buffer, old, trial, index)
        return chosen, trial, metrics.change(old, chosen).astype(old.inv_diag.dtype)

    def _chosen(self, wf, buffer: metrics.Buffer, old: Metric, trial, index):
        variance = wf.m2 / jnp.maximum(wf.n - 1.0, 1.0)
        diagonal = metrics.diagonal(adaptation.regularised(variance, wf.n), old.values.shape[-1])
        if self.metric_kind == "diag":
            return old._replace(inv_diag=diagonal.inv_diag), trial
        low_rank = metrics.window_estimate(
            self.metric_kind, buffer, old, base_diag=diagonal.inv_diag
        )
        if self.metric_kind != "auto":
            return low_rank, trial
        plan = self.trial_plan
        trial, use_low_rank = metric_trial.at_window_end(
            trial,
            jnp.asarray(plan.trial_starts)[index],
            jnp.asarray(plan.trial_ends)[index],
            metrics.rank(low_rank) > 0,
        )
        chosen = jax.tree_util.tree_map(
            lambda a, b: jnp.where(use_low_rank, a, b).astype(b.dtype), low_rank, diagonal
        )
        return chosen, trial
