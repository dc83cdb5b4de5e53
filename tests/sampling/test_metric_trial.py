"""mpi_pymc.sampling.metric_trial: the auto metric's trial windows and its choice, pure."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mpi_pymc.sampling import metric_trial as mt
from mpi_pymc.sampling.adaptation import warmup_schedule


def test_the_trial_runs_in_stans_fourth_window_after_the_diagonal_is_measured_in_the_third():
    plan = mt.plan(warmup_schedule(1000))  # windows end at 99, 149, 249, 449, 949
    assert list(np.flatnonzero(plan.trial_starts)) == [249]
    assert list(np.flatnonzero(plan.trial_ends)) == [449]
    # Costs are measured over the second half of each window, where the step size settled.
    assert plan.measured[200:250].all() and not plan.measured[150:200].any()
    assert plan.measured[700:950].all() and not plan.measured[950:].any()
    short = mt.plan(warmup_schedule(200))  # two windows: the trial is the second
    assert list(np.flatnonzero(short.trial_starts)) == [99]
    assert list(np.flatnonzero(short.trial_ends)) == [149]
    assert not mt.plan(warmup_schedule(10)).trial_starts.any()  # no window, no trial


def _window(trial, steps, divergences, n=50):
    for i in range(n):
        trial = mt.record(trial, jnp.asarray(steps), jnp.asarray(i < divergences), True)
    return trial


def test_low_rank_is_kept_only_where_it_made_trees_cheaper_by_the_margin():
    yes, no = jnp.asarray(True), jnp.asarray(False)
    trial = _window(mt.start(jnp.float64), steps=63.0, divergences=0)
    trial, use = mt.at_window_end(trial, yes, no, low_rank_used=yes)
    assert int(trial.mode) == mt.TRYING and bool(use)
    assert float(trial.diagonal_cost) == 63.0
    assert not bool(mt.decided(trial))
    cheap, _ = mt.at_window_end(_window(trial, steps=7.0, divergences=0), no, yes, yes)
    assert int(cheap.mode) == mt.LOW_RANK and bool(mt.decided(cheap))
    # Fewer leapfrogs, but not by the margin: the diagonal stays.
    close, use = mt.at_window_end(_window(trial, steps=40.0, divergences=0), no, yes, yes)
    assert int(close.mode) == mt.DIAGONAL and not bool(use)
    # Cheap trees that diverge cost more than they save.
    diverging, use = mt.at_window_end(_window(trial, steps=7.0, divergences=20), no, yes, yes)
    assert int(diverging.mode) == mt.DIAGONAL and not bool(use)


def test_no_trial_where_the_estimate_uses_no_direction():
    yes = jnp.asarray(True)
    trial = _window(mt.start(jnp.float64), steps=5.0, divergences=0)
    trial, use = mt.at_window_end(trial, yes, jnp.asarray(False), low_rank_used=jnp.asarray(False))
    assert int(trial.mode) == mt.DIAGONAL and not bool(use) and bool(mt.decided(trial))
