"""The adaptive jittered HMC kernel, in-process (no MPI): schedule, jitter, adaptation, posterior.

The statistical check samples a Gaussian with known means and scales spread over two orders of
magnitude; tolerances come from the run's own ESS (4 Monte Carlo standard errors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerances import assert_moments, assert_window_variances

from mpi_pymc.diagnostics import maths as diagnostics
from mpi_pymc.sampling.adaptation import warmup_schedule
from mpi_pymc.sampling.base import GROUP_AXIS
from mpi_pymc.sampling.chain_group import vmap_chains
from mpi_pymc.sampling.hmc import JITTER_LOW, TRAJECTORY_SCALE, AdaptiveHmc, van_der_corput

jax.config.update("jax_enable_x64", True)

MEANS = np.array([1.0, -2.0, 0.0, 5.0, 0.5])
SDS = np.array([0.1, 1.0, 10.0, 0.5, 3.0])
# Allowance for the measured downward bias of hmc's warmup-window variances (log scale):
# twice the -0.091 measured (see test_adaptation_learns_scales_step_and_length).
HMC_WINDOW_BIAS = 0.18


def _windows(schedule):
    """Slow windows as (start, stop) from the boolean masks."""
    ends = np.flatnonzero(schedule.window_end) + 1
    starts = np.concatenate([[np.flatnonzero(schedule.slow)[0]], ends[:-1]]) if len(ends) else []
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def test_warmup_schedule_is_stans():
    s = warmup_schedule(1000)
    assert _windows(s) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert s.final_start == 950 and s.slow.sum() == 875
    short = warmup_schedule(100)  # under 150: 15% fast, one window, 10% fast
    assert _windows(short) == [(15, 90)] and short.final_start == 90
    tiny = warmup_schedule(10)  # no mass-matrix adaptation at all
    assert not tiny.slow.any() and tiny.final_start == 0


def test_jitter_is_van_der_corput_in_the_open_unit_interval():
    values = np.asarray(van_der_corput(jnp.arange(1, 9)))
    np.testing.assert_allclose(values, [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875, 0.0625])
    many = np.asarray(van_der_corput(jnp.arange(1, 1 << 16)))
    assert many.min() > 0 and many.max() < 1
    assert abs(many.mean() - 0.5) < 1e-3  # evenly spread: a fair jitter


def _logdensity(x, data):
    (means,) = data
    return -0.5 * jnp.sum(((x - means) / SDS) ** 2)


def _run(tune, draws, chains, group_size=1):
    """Warmup then sampling of ``chains`` vmapped chains (in adaptation groups if asked)."""
    kernel = AdaptiveHmc(
        _logdensity, tune=tune, target_accept=0.8, max_steps=1024, group_size=group_size
    )
    data = (jnp.asarray(MEANS),)
    keys = jax.random.split(jax.random.PRNGKey(3), chains)
    starts = jnp.asarray(np.random.default_rng(0).uniform(-2, 2, (chains, MEANS.size)))

    state = vmap_chains(kernel.init, (0, 0, None), group_size)(keys, starts, data)

    def warm(s, _):
        return kernel.warmup_step(s, data)[0], None

    def sample(s, _):
        s, position, stats = kernel.step(s, data)
        return s, (position, stats)

    run = jax.jit(
        vmap_chains(
            lambda s: (lambda w: (w, jax.lax.scan(sample, w, None, length=draws)[1]))(
                jax.lax.scan(warm, s, None, length=tune)[0]
            ),
            (0,),
            group_size,
        )
    )
    adapted, (positions, stats) = run(state)
    return adapted, np.asarray(positions), {k: np.asarray(v) for k, v in stats.items()}


@pytest.fixture(scope="module")
def gaussian_run():
    return _run(tune=1000, draws=1000, chains=4)


@pytest.fixture(scope="module")
def grouped_run():
    """8 chains in two adaptation groups of 4, a shorter warmup (pooling needs fewer)."""
    return _run(tune=400, draws=500, chains=8, group_size=4)


@pytest.mark.parametrize("run", ["gaussian_run", "grouped_run"])
def test_gaussian_means_and_sds_within_mcse(run, request):
    _, positions, stats = request.getfixturevalue(run)
    assert not stats["diverging"].any()
    ess = diagnostics.ess_bulk(positions)
    assert ess.min() > 1000  # 4000 draws of an easy target
    assert_moments(positions, MEANS, SDS)


def test_adaptation_learns_scales_step_and_length(gaussian_run):
    adapted, positions, stats = gaussian_run
    # Mass matrix: the variances, within the noise of Stan's last 500-draw window, less the
    # bias this kernel's warmup windows show: over 4 seeds x 4 chains x 5 scales the mean log
    # ratio was -0.091 +- 0.012 (NUTS, same target and schedule: -0.036 +- 0.013, what its
    # shorter window and Stan's shrinkage explain). Sampling itself is exact (moments above).
    assert_window_variances(
        adapted.metric.inv_diag, positions, MEANS, SDS, 500, low_bias=HMC_WINDOW_BIAS
    )
    # In the adapted metric the target is a unit Gaussian: U-turn time near pi.
    trajectory = np.asarray(adapted.trajectory)
    assert np.all(np.abs(trajectory / (TRAJECTORY_SCALE * np.pi) - 1) < 0.35), trajectory
    # Step size reaches the target acceptance; sampling steps follow T / eps with the jitter,
    # u uniform on (JITTER_LOW, 1).
    acceptance = stats["acceptance_rate"].mean(axis=1)
    assert np.all((acceptance > 0.7) & (acceptance < 0.95)), acceptance
    eps = np.exp(np.asarray(adapted.log_step_size))
    mean_steps = stats["n_steps"].mean(axis=1)
    expected = (1 + JITTER_LOW) / 2 * trajectory / eps + 0.5
    np.testing.assert_allclose(mean_steps, expected, rtol=0.15)
    # The same jitter for every chain: with similar settings, similar step counts per draw.
    # (Independent jitters would correlate near 0; with about 2 steps per draw here, rounding
    # to whole steps keeps it below 1.)
    assert np.corrcoef(stats["n_steps"][0], stats["n_steps"][1])[0, 1] > 0.5


def test_warmup_steps_capped_by_the_averaged_step_size():
    kernel = AdaptiveHmc(_logdensity, tune=100, target_accept=0.8, max_steps=1024)
    state = kernel.init(jax.random.PRNGKey(0), jnp.asarray(MEANS), (jnp.asarray(MEANS),))
    # i = 0: u = JITTER_LOW + (1 - JITTER_LOW) / 2; T = 2, current step 0.01.
    state = state._replace(
        i=jnp.asarray(0, jnp.int32), trajectory=jnp.asarray(2.0), log_step_size=jnp.log(0.01)
    )
    u = JITTER_LOW + (1 - JITTER_LOW) * 0.5
    # No averaged step yet (da.n 0): ceil(u T / eps).
    assert int(kernel.steps_for(state)) == int(np.ceil(u * 2.0 / 0.01))
    # The iterate dipped to 0.01 while the average is 0.2: as many steps as at 0.2.
    dipped = state._replace(da=state.da._replace(n=jnp.asarray(5.0), log_avg=jnp.log(0.2)))
    assert int(kernel.steps_for(dipped)) == int(np.ceil(u * 2.0 / 0.2))
    # An iterate above the average keeps its own (fewer) steps; so does sampling, where the
    # iterate is the average.
    above = dipped._replace(log_step_size=jnp.log(0.4))
    assert int(kernel.steps_for(above)) == int(np.ceil(u * 2.0 / 0.4))
    settled = dipped._replace(log_step_size=jnp.log(0.2))
    assert int(kernel.steps_for(settled)) == int(np.ceil(u * 2.0 / 0.2))


def test_a_group_shares_its_adapted_settings_and_steps_in_lockstep(grouped_run):
    adapted, positions, stats = grouped_run
    settings = {
        "log_step_size": adapted.log_step_size,
        "metric": adapted.metric.inv_diag,
        "trajectory": adapted.trajectory,
    }
    for name, value in settings.items():
        value = np.asarray(value)
        for group in (value[:4], value[4:]):
            np.testing.assert_array_equal(group, np.broadcast_to(group[0], group.shape), name)
        assert not np.array_equal(value[0], value[4]), name  # groups adapt apart
    steps = stats["n_steps"]
    np.testing.assert_array_equal(steps[:4], np.broadcast_to(steps[0], steps[:4].shape))
    np.testing.assert_array_equal(steps[4:], np.broadcast_to(steps[4], steps[4:].shape))
    # The pooled variance over 4 chains x 200 window draws: within its noise of the truth.
    assert_window_variances(
        adapted.metric.inv_diag, positions, MEANS, SDS, 200, group=4, low_bias=HMC_WINDOW_BIAS
    )
    trajectory = float(adapted.trajectory[0])
    assert abs(trajectory / (TRAJECTORY_SCALE * np.pi) - 1) < 0.35, trajectory
    acceptance = stats["acceptance_rate"][:4].mean()
    assert 0.7 < acceptance < 0.95, acceptance


def test_pooled_variance_counts_the_spread_between_chains():
    kernel = AdaptiveHmc(_logdensity, tune=10, target_accept=0.8, max_steps=8, group_size=3)
    rng = np.random.default_rng(5)
    # Three chains' windows, 40 draws each, centred apart: the pooled variance must see it.
    windows = (
        rng.normal(size=(3, 40, 2)) + np.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 5.0]])[:, None]
    )
    count = jnp.full((3,), 40.0)
    mean = jnp.asarray(windows.mean(axis=1))
    m2 = jnp.asarray(((windows - windows.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
    pooled = jax.vmap(kernel.pooled_variance, axis_name=GROUP_AXIS)(count, mean, m2)
    variance, total = np.asarray(pooled[0]), np.asarray(pooled[1])
    expected = windows.reshape(-1, 2).var(axis=0, ddof=1)
    np.testing.assert_allclose(variance, np.broadcast_to(expected, (3, 2)), rtol=1e-12)
    np.testing.assert_array_equal(total, [120.0] * 3)
