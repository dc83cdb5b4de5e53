"""Statistical checks whose tolerances come from the run's own effective sample size.

Each bound is set so that a correct sampler fails it with probability of order 1e-4 per
checked quantity: a test that fails on a new JAX version's random stream (or a new seed) is
then telling the truth, not drawing an unlucky number.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from mpi_pymc import diagnostics

# Standard errors allowed for a single Gaussian-ish estimate (two-sided p about 7e-6).
SIGMAS = 4.5


def assert_moments(positions: np.ndarray, means: np.ndarray, sds: np.ndarray) -> None:
    """Means and standard deviations of (chain, draw, dim) draws within SIGMAS MCSE of the
    truth, and R-hat within what the run's ESS allows a converged sampler."""
    mean = positions.mean(axis=(0, 1))
    sd = positions.std(axis=(0, 1), ddof=1)
    mcse_mean = sd / np.sqrt(diagnostics.ess_mean(positions))
    assert np.all(np.abs(mean - means) < SIGMAS * mcse_mean), (mean, means, mcse_mean)
    sq = (positions - means) ** 2
    mcse_sd = sq.std(axis=(0, 1), ddof=1) / np.sqrt(diagnostics.ess_mean(sq)) / (2 * sds)
    assert np.all(np.abs(sd - sds) < SIGMAS * mcse_sd), (sd, sds, mcse_sd)
    rhat = diagnostics.rhat_rank(positions)
    bound = rhat_bound(positions)
    assert np.all(rhat < bound), (rhat, bound)


def rhat_bound(positions: np.ndarray, p: float = 1e-4) -> np.ndarray:
    """The largest rank R-hat a converged run of this ESS reaches with probability ``1 - p``.

    With m split chains each worth n_eff = ESS/m independent draws, B/W is about
    chi2(m - 1) / (m - 1) / n_eff, and R-hat**2 = (n - 1)/n + B/(n W) <= 1 + B/(n W).
    The ESS used is the smaller of the bulk and the folded (tail-scale) one, as R-hat is the
    larger of the bulk and folded statistics.
    """
    split = 2 * positions.shape[0]
    folded = np.abs(positions - np.median(positions, axis=(0, 1)))
    ess = np.minimum(diagnostics.ess_bulk(positions), diagnostics.ess_bulk(folded))
    spread = stats.chi2.ppf(1 - p, split - 1) / (split - 1)
    return np.sqrt(1 + spread * split / ess)


def assert_window_variances(
    inverse_mass: np.ndarray,
    positions: np.ndarray,
    means: np.ndarray,
    sds: np.ndarray,
    window: int,
    group: int = 1,
    low_bias: float = 0.0,
) -> None:
    """The adapted diagonal inverse mass matrices (chain, dim) are the last warmup window's
    variance estimates: within SIGMAS standard errors of the true variances.

    The error is judged from the sampling draws (chain, draw, dim) as if the window had mixed
    as well: ``window`` draws per chain (pass the shortest window the schedule may end on),
    pooled over consecutive chains in adaptation groups of ``group``. ``low_bias`` allows a
    measured downward bias of the log variance on top of the noise.
    """
    sq = (positions - means) ** 2
    per_chain = np.stack([diagnostics.ess_mean(chain[None]) for chain in sq])
    pooled = per_chain.reshape(-1, group, per_chain.shape[-1]).sum(axis=1)
    ess_window = np.repeat(pooled, group, axis=0) * (window / positions.shape[1])
    relative_se = sq.std(axis=(0, 1), ddof=1) / sds**2 / np.sqrt(ess_window)
    ratio = np.asarray(inverse_mass) / sds**2
    log_ratio = np.log(ratio)
    within = (log_ratio < SIGMAS * relative_se) & (log_ratio > -SIGMAS * relative_se - low_bias)
    assert np.all(within), (ratio, relative_se)
