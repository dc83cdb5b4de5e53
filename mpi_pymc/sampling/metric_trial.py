"""``--metric auto`` for NUTS: the warmup tries the low-rank metric for one window and keeps it
only where it made the trees cheaper than the diagonal did.

Why a trial: the Fisher low-rank estimate (:mod:`~mpi_pymc.sampling.metric`) is several times
faster where a posterior has strong linear correlations (collinear predictors, a hierarchical
model's correlated group effects), and several times slower where it is not Gaussian-like: on
a regularised horseshoe regression it cut the minimum bulk ESS from 2,355 to 156 and raised the
divergences from 5 to 142 (nutpie's own benchmarks show it losing there too). An estimate from
the window's draws alone cannot tell the two apart; the sampler's own cost can.

The schedule (Stan's slow windows, ``adaptation.warmup_schedule``): the windows before the
trial run under Stan's diagonal, as ``--metric diag`` does. At the end of the trial's start
window the diagonal's cost is recorded and, if the low-rank estimate uses any direction, it
runs the next window (the trial). At the trial's end the chain keeps the low-rank metric when
its cost, times :data:`MARGIN`, is below the diagonal's, and goes back to Stan's diagonal
otherwise; later windows re-estimate the chosen kind. The cost is the mean number of leapfrogs
per iteration over the second half of a window (the step size has settled there), each
divergent iteration counted :data:`DIVERGENCE_COST` times. The choice is the
chain's own: its draws do not depend on other chains or ranks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpi_pymc.sampling.adaptation import Schedule

# The low-rank metric must make trees at least this much cheaper: per leapfrog it costs more,
# and the diagonal's cost is measured one window earlier, where it is still somewhat higher than
# it will be (a horseshoe's diagonal: 150 leapfrogs in the 100-draw window, 100 in the last).
MARGIN = 2.0
# A divergent iteration counts as this many iterations (it signals a metric that leaves regions
# unexplored, which fewer leapfrogs do not make up for).
DIVERGENCE_COST = 10.0
# Modes of a chain's choice.
DIAGONAL_FIRST, TRYING, LOW_RANK, DIAGONAL = 0, 1, 2, 3


class Trial(NamedTuple):
    """One chain's trial: ``mode`` (one of the constants above), the current window's cost
    sums over its second half, and the diagonal's cost recorded when the trial began."""

    mode: jax.Array
    steps: jax.Array
    divergences: jax.Array
    iterations: jax.Array
    diagonal_cost: jax.Array


class Plan(NamedTuple):
    """Per warmup iteration (static): whether it counts towards its window's cost, whether
    the trial starts at its end, and whether the trial is decided there."""

    measured: np.ndarray
    trial_starts: np.ndarray
    trial_ends: np.ndarray


def plan(schedule: Schedule) -> Plan:
    """The trial's windows: the diagonal's cost is measured in the third slow window (Stan's
    100-draw one), the low-rank metric runs the fourth (200 draws), and the last (500) runs
    the chosen kind. With fewer windows, the last two (none with one)."""
    tune = schedule.slow.shape[0]
    measured = np.zeros(tune, bool)
    starts, ends = np.zeros(tune, bool), np.zeros(tune, bool)
    window_ends = np.flatnonzero(schedule.window_end)
    if not len(window_ends):
        return Plan(measured, starts, ends)
    window_starts = np.concatenate([[np.argmax(schedule.slow)], window_ends[:-1] + 1])
    for first, last in zip(window_starts, window_ends, strict=True):
        measured[(first + last + 1) // 2 : last + 1] = True
    if len(window_ends) >= 2:
        trial = min(3, len(window_ends) - 1)
        starts[window_ends[trial - 1]], ends[window_ends[trial]] = True, True
    return Plan(measured, starts, ends)


def decided(trial: Trial) -> jax.Array:
    """Whether the chain's choice is made (warmup may then end early: metric settled)."""
    return (trial.mode == LOW_RANK) | (trial.mode == DIAGONAL)


def start(dtype) -> Trial:
    zero = jnp.zeros((), dtype)
    return Trial(jnp.zeros((), jnp.int32), zero, zero, zero, zero)


def record(trial: Trial, n_steps, diverging, measured) -> Trial:
    """Add one iteration's leapfrogs and divergence to the window's cost, when ``measured``."""
    dtype = trial.steps.dtype
    add = jnp.where(measured, 1.0, 0.0).astype(dtype)
    return trial._replace(
        steps=trial.steps + add * n_steps.astype(dtype),
        divergences=trial.divergences + add * diverging.astype(dtype),
        iterations=trial.iterations + add,
    )


def _cost(trial: Trial):
    """Mean leapfrogs per iteration, each divergent iteration counted DIVERGENCE_COST times."""
    iterations = jnp.maximum(trial.iterations, 1.0)
    return trial.steps / iterations * (1.0 + DIVERGENCE_COST * trial.divergences / iterations)


def at_window_end(trial: Trial, starts, ends, low_rank_used) -> tuple[Trial, jax.Array]:
    """The trial after a window ends (``starts``/``ends``: the trial begins or is decided
    here; ``low_rank_used``: the new low-rank estimate uses a direction), and whether the next
    window runs under the low-rank estimate (else Stan's diagonal)."""
    cost = _cost(trial)
    begin = starts & (trial.mode == DIAGONAL_FIRST)
    mode = jnp.where(begin, jnp.where(low_rank_used, TRYING, DIAGONAL), trial.mode)
    decide = ends & (trial.mode == TRYING)
    mode = jnp.where(
        decide, jnp.where(MARGIN * cost < trial.diagonal_cost, LOW_RANK, DIAGONAL), mode
    )
    zero = jnp.zeros_like(trial.steps)
    new = Trial(
        mode=mode.astype(jnp.int32),
        steps=zero,
        divergences=zero,
        iterations=zero,
        diagonal_cost=jnp.where(begin, cost, trial.diagonal_cost),
    )
    return new, (mode == TRYING) | (mode == LOW_RANK)
