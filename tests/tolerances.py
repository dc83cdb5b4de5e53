"""Statistical checks whose tolerances come from the run's own effective sample size.

Each bound is set so that a correct sampler fails it with probability of order 1e-4 per
checked quantity: a test that fails on a new JAX version's random stream (or a new seed) is
then telling the truth, not drawing an unlucky number.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from mpi_pymc.diagnostics import maths as diagnostics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ArviZ 0.2x announces its refactor on import
    import arviz as az

ARVIZ_MAJOR = int(az.__version__.split(".")[0])

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


def arviz_reference(draws: np.ndarray) -> dict[str, np.ndarray]:
    """ArviZ's numbers for draws shaped (chains, draws, n_params), through its public API."""
    draws = np.asarray(draws, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = az.summary(az.convert_to_dataset(draws), kind="stats", round_to="none")
        result = {"mean": summary["mean"].to_numpy(), "sd": summary["sd"].to_numpy()}
        if ARVIZ_MAJOR == 0:
            dataset = az.convert_to_dataset(draws)

            def values(data):
                return np.asarray(data["x"].values, dtype=float)

            result["r_hat"] = values(az.rhat(dataset, method="rank"))
            result["ess_bulk"] = values(az.ess(dataset, method="bulk"))
            result["ess_tail"] = values(az.ess(dataset, method="tail"))
            result["mcse_mean"] = values(az.mcse(dataset, method="mean"))
        else:
            # The array interface of arviz-stats; chain_axis=0, draw_axis=1. ArviZ 1.x has no
            # default tail quantiles for arrays (and 0.11/0.89 style ones for xarray input).
            result["r_hat"] = az.rhat(draws, method="rank", chain_axis=0, draw_axis=1)
            result["ess_bulk"] = az.ess(draws, method="bulk", chain_axis=0, draw_axis=1)
            result["ess_tail"] = az.ess(
                draws, method="tail", prob=(0.05, 0.95), chain_axis=0, draw_axis=1
            )
            result["mcse_mean"] = az.mcse(draws, method="mean", chain_axis=0, draw_axis=1)
    return {key: np.asarray(value, dtype=float) for key, value in result.items()}


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|ours - reference| / |reference|; 0 where both agree exactly or are both NaN, inf where
    only one is NaN."""
    ours = np.asarray(ours, dtype=float)
    reference = np.asarray(reference, dtype=float)
    both_nan = np.isnan(ours) & np.isnan(reference)
    one_nan = np.isnan(ours) ^ np.isnan(reference)
    with np.errstate(invalid="ignore", divide="ignore"):
        difference = np.where(ours == reference, 0.0, np.abs(ours - reference) / np.abs(reference))
    return np.where(both_nan, 0.0, np.where(one_nan, np.inf, difference))
