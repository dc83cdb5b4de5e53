"""mpi_pymc.diagnostics.maths against ArviZ (0.2x or 1.x, whichever is installed) on the same
draws."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
from helpers import REFERENCE
from scipy import stats
from tolerances import ARVIZ_MAJOR, arviz_reference, az, relative_difference

from mpi_pymc.diagnostics import blocks
from mpi_pymc.diagnostics import maths as diagnostics

RTOL = 1e-8
COMPARED = ("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mean", "sd")


def assert_matches_arviz(draws: np.ndarray) -> dict[str, np.ndarray]:
    ours = diagnostics.all_diagnostics(draws)
    reference = arviz_reference(draws)
    for key in COMPARED:
        difference = relative_difference(ours[key], reference[key])
        assert difference.max() < RTOL, (
            f"{key}: ours {ours[key]} vs ArviZ {az.__version__} {reference[key]}"
        )
    return ours


def ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    noise = rng.normal(size=shape)
    chains = np.empty(shape)
    chains[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        chains[:, t] = phi * chains[:, t - 1] + noise[:, t]
    return chains


def mixed_draws(n_chains: int, n_draws: int, seed: int) -> np.ndarray:
    """iid, strongly and mildly autocorrelated, antithetic, heavy-tailed and skewed parameters."""
    rng = np.random.default_rng(seed)
    shape = (n_chains, n_draws)
    return np.stack(
        [
            rng.normal(2.0, 3.0, size=shape),
            ar1(rng, shape, 0.95),
            ar1(rng, shape, 0.3) - 5.0,
            ar1(rng, shape, -0.6),  # negative lag-1 correlation: ESS above the draw count
            rng.standard_t(2, size=shape),
            rng.exponential(size=shape),
        ],
        axis=-1,
    )


# Draw counts keep chains * draws away from the few sizes where ArviZ 0.2x's tail quantile
# rounds to the neighbouring order statistic; see test_tail_quantile_is_exact_type7.
@pytest.mark.parametrize(
    ("n_chains", "n_draws"),
    [(4, 500), (8, 250), (2, 1000), (3, 201), (5, 333), (1, 400)],
)
def test_matches_arviz_on_mixed_parameters(n_chains: int, n_draws: int) -> None:
    ours = assert_matches_arviz(mixed_draws(n_chains, n_draws, seed=n_chains * n_draws))
    if n_chains == 1:
        assert np.isnan(ours["r_hat"]).all()  # R-hat needs two chains, as in ArviZ


def test_matches_arviz_on_stan_reference_draws() -> None:
    """Real NUTS draws: posteriordb's eight schools (non-centred), 10 chains x 1000 draws."""
    archive = REFERENCE / "eight_schools_noncentered.draws.json.zip"
    if not archive.exists():
        pytest.skip(f"reference draws not found at {archive}")
    with zipfile.ZipFile(archive) as opened:
        chains = json.loads(opened.read(opened.namelist()[0]))
    names = list(chains[0])
    draws = np.array([[chain[name] for name in names] for chain in chains]).transpose(0, 2, 1)
    ours = assert_matches_arviz(draws)
    assert (ours["r_hat"] < 1.01).all() and (ours["ess_bulk"] > 1000).all()


def test_odd_draw_count_drops_middle_draw() -> None:
    draws = np.arange(2 * 7, dtype=float).reshape(2, 7, 1)
    split = diagnostics.split_chains(draws)
    assert split.shape == (4, 3, 1)
    np.testing.assert_array_equal(split[:, :, 0], [[0, 1, 2], [7, 8, 9], [4, 5, 6], [11, 12, 13]])
    # The middle draw is an outlier: it must not move any split-chain statistic.
    rng = np.random.default_rng(5)
    base = rng.normal(size=(4, 301, 2))
    moved = base.copy()
    moved[:, 150] += 100.0
    np.testing.assert_array_equal(diagnostics.rhat_rank(base), diagnostics.rhat_rank(moved))
    np.testing.assert_array_equal(diagnostics.ess_bulk(base), diagnostics.ess_bulk(moved))
    assert_matches_arviz(moved)


def test_constant_parameter_matches_arviz() -> None:
    rng = np.random.default_rng(11)
    draws = rng.normal(size=(4, 100, 3))
    draws[..., 1] = 2.5
    ours = assert_matches_arviz(draws)
    assert np.isnan(ours["r_hat"][1])
    assert ours["ess_bulk"][1] == ours["ess_tail"][1] == 4 * 100
    assert ours["mcse_mean"][1] == 0.0 and ours["sd"][1] == 0.0
    np.testing.assert_array_equal(diagnostics.ess_of_chains(draws[..., 1:2]), [400.0])


def test_multimodal_chains_have_large_rhat() -> None:
    rng = np.random.default_rng(12)
    modes = np.array([-6.0, -6.0, 6.0, 6.0, 0.0])[:, None, None]
    draws = rng.normal(size=(5, 400, 2)) + modes * np.array([1.0, 0.1])
    ours = assert_matches_arviz(draws)
    assert ours["r_hat"][0] > 2.0
    assert ours["ess_bulk"][0] < 20
    assert 1.1 < ours["r_hat"][1] < ours["r_hat"][0]


def test_discrete_draws_with_ties_match_arviz() -> None:
    rng = np.random.default_rng(13)
    shape = (4, 300)
    alternating = np.where(np.arange(300) % 2 == 0, -1.0, 1.0)
    draws = np.stack(
        [
            rng.poisson(3.0, size=shape).astype(float),
            rng.binomial(1, 0.1, size=shape).astype(float),
            np.round(ar1(rng, shape, 0.8)),
            # Exactly half -1 and half +1: the folded draws |x - 0| are constant, so the folded
            # R-hat is NaN and the rank R-hat is the bulk one (Python's max(bulk, nan)).
            np.broadcast_to(alternating, shape),
        ],
        axis=-1,
    )
    ours = assert_matches_arviz(draws)
    assert np.isfinite(ours["r_hat"]).all()


def test_too_few_draws_and_nan_give_nan() -> None:
    rng = np.random.default_rng(14)
    short = rng.normal(size=(3, 3, 2))
    ours = assert_matches_arviz(short)
    for key in ("r_hat", "ess_bulk", "ess_tail", "mcse_mean"):
        assert np.isnan(ours[key]).all()
    with_nan = rng.normal(size=(3, 50, 2))
    with_nan[1, 7, 0] = np.nan
    ours = assert_matches_arviz(with_nan)
    assert np.isnan([ours[key][0] for key in COMPARED]).all()
    assert np.isfinite([ours[key][1] for key in COMPARED]).all()


def test_rank_normalize_averages_ties_over_all_chains() -> None:
    draws = np.array([[[3.0], [1.0]], [[1.0], [7.0]]])  # (2 chains, 2 draws, 1 parameter)
    ranks = np.array([[3.0, 1.5], [1.5, 4.0]])
    expected = stats.norm.ppf((ranks - 3 / 8) / (4 + 1 / 4))
    np.testing.assert_allclose(diagnostics.rank_normalize(draws)[..., 0], expected, rtol=1e-15)


def test_rank_normalize_matches_scipy_ranks_on_the_threaded_path() -> None:
    # 64 chains x 400 draws x 8 parameters is large enough for the per-parameter threads; half
    # of parameter 0 is rounded (many ties), parameter 1 is constant (one tie group).
    rng = np.random.default_rng(5)
    draws = rng.normal(size=(64, 400, 8))
    draws[:, :200, 0] = np.round(draws[:, :200, 0], 1)
    draws[:, :, 1] = 2.5
    pooled = draws.reshape(-1, 8)
    ranks = stats.rankdata(pooled, method="average", axis=0)
    expected = stats.norm.ppf((ranks - 3 / 8) / (pooled.shape[0] + 1 / 4)).reshape(draws.shape)
    np.testing.assert_allclose(diagnostics.rank_normalize(draws), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape", [(4, 101, 3), (3, 50, 1), (1, 9, 2)])
def test_mean_autocovariance_is_the_chains_mean_and_leaves_draws_alone(shape) -> None:
    draws = np.random.default_rng(6).normal(size=shape).cumsum(axis=1)
    before = draws.copy()
    expected = diagnostics.autocovariance(draws).mean(axis=0)
    ours = diagnostics.mean_autocovariance(draws)
    np.testing.assert_array_equal(draws, before)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_tail_quantile_is_exact_type7() -> None:
    # 3 x 207 = 621 draws: (621 - 1) * 0.05 = 31 and (621 - 1) * 0.95 = 589 are whole numbers,
    # so the 5% and 95% quantiles are exactly the 32nd and 590th smallest draws. ArviZ 1.x
    # (numpy.quantile) agrees; ArviZ 0.2x (scipy mquantiles) rounds the 95% one to just below
    # the 590th draw and gets a different tail ESS.
    rng = np.random.default_rng(15)
    draws = ar1(rng, (3, 207), 0.5)[..., None]
    ordered = np.sort(draws.ravel())
    low, high = ordered[31], ordered[589]
    expected = min(
        diagnostics.ess_of_chains(diagnostics.split_chains(draws <= low))[0],
        diagnostics.ess_of_chains(diagnostics.split_chains(draws <= high))[0],
    )
    assert diagnostics.ess_tail(draws)[0] == expected
    if ARVIZ_MAJOR >= 1:
        assert_matches_arviz(draws)


def test_individual_functions_agree_with_all_diagnostics() -> None:
    draws = mixed_draws(4, 151, seed=16)
    combined = diagnostics.all_diagnostics(draws, superchain_sizes=[1, 3])
    singles = {
        "mean": diagnostics.posterior_mean(draws),
        "sd": diagnostics.posterior_sd(draws),
        "mcse_mean": diagnostics.mcse_mean(draws),
        "r_hat": diagnostics.rhat_rank(draws),
        "ess_bulk": diagnostics.ess_bulk(draws),
        "ess_tail": diagnostics.ess_tail(draws),
        "r_hat_nested": diagnostics.rhat_nested(draws, [1, 3]),
    }
    assert set(combined) == set(diagnostics.STAT_KEYS)
    for key, value in singles.items():
        np.testing.assert_array_equal(combined[key], value, err_msg=key)


def test_split_rhat_matches_arviz_split_method() -> None:
    draws = mixed_draws(4, 201, seed=17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_MAJOR == 0:
            reference = az.rhat(az.convert_to_dataset(draws), method="split")["x"].values
        else:
            reference = az.rhat(draws, method="split", chain_axis=0, draw_axis=1)
    assert relative_difference(diagnostics.split_rhat(draws), reference).max() < RTOL


def nested_rhat_by_hand(draws: np.ndarray, superchain_sizes: list[int]) -> np.ndarray:
    """The nested R-hat formula written out with loops, one parameter at a time."""
    from scipy import stats

    def nested(chains: list[np.ndarray], groups: list[list[int]]) -> float:
        superchain_means, within = [], []
        for members in groups:
            means = [chains[i].mean() for i in members]
            variances = [chains[i].var(ddof=1) for i in members]
            superchain_means.append(sum(means) / len(means))
            spread = np.var(means, ddof=1) if len(means) > 1 else 0.0
            within.append(sum(variances) / len(variances) + spread)
        between = np.var(superchain_means, ddof=1)
        return float(np.sqrt(1.0 + between / np.mean(within)))

    def normal_scores(chains: list[np.ndarray]) -> list[np.ndarray]:
        pooled = np.concatenate(chains)
        ranks = stats.rankdata(pooled)
        scores = stats.norm.ppf((ranks - 0.375) / (pooled.size + 0.25))
        return np.split(scores, len(chains))

    n_chains, n_draws, n_params = draws.shape
    half = n_draws // 2
    owner = np.repeat(np.arange(len(superchain_sizes)), superchain_sizes)
    result = []
    for param in range(n_params):
        halves, half_owner = [], []
        for chain in range(n_chains):
            halves += [draws[chain, :half, param], draws[chain, n_draws - half :, param]]
            half_owner += [owner[chain], owner[chain]]
        groups = [
            [i for i, k in enumerate(half_owner) if k == group]
            for group in range(len(superchain_sizes))
        ]
        median = np.median(np.concatenate(halves))
        folded = [np.abs(chain - median) for chain in halves]
        result.append(
            max(nested(normal_scores(halves), groups), nested(normal_scores(folded), groups))
        )
    return np.array(result)


@pytest.mark.parametrize(
    ("n_draws", "superchain_sizes"), [(200, [3, 2, 2]), (101, [1, 4, 2]), (150, [2, 2, 2, 1])]
)
def test_nested_rhat_matches_formula(n_draws: int, superchain_sizes: list[int]) -> None:
    draws = mixed_draws(sum(superchain_sizes), n_draws, seed=n_draws)
    ours = diagnostics.rhat_nested(draws, superchain_sizes)
    expected = nested_rhat_by_hand(draws, superchain_sizes)
    assert relative_difference(ours, expected).max() < RTOL


@pytest.mark.skipif(ARVIZ_MAJOR == 0, reason="ArviZ 0.2x has no nested R-hat")
def test_nested_rhat_matches_arviz_stats_for_equal_superchains() -> None:
    draws = mixed_draws(6, 201, seed=18)
    draws[..., 2] = 1.0  # constant: NaN in both
    sizes = [2, 2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = az.rhat_nested(
            draws, superchain_ids=np.repeat(np.arange(3), 2), chain_axis=0, draw_axis=1
        )
    assert relative_difference(diagnostics.rhat_nested(draws, sizes), reference).max() < RTOL


def test_nested_rhat_detects_disagreeing_superchains() -> None:
    rng = np.random.default_rng(19)
    mixed = rng.normal(size=(8, 1000, 2))
    np.testing.assert_array_less(diagnostics.rhat_nested(mixed, [2, 2, 2, 2]), 1.01)
    np.testing.assert_array_less(0.999, diagnostics.rhat_nested(mixed, [3, 3, 2]))
    # Superchains stuck in two different modes; every chain inside one agrees with its partner.
    mixed[4:, :, 0] += 4.0
    nested = diagnostics.rhat_nested(mixed, [4, 4])
    assert nested[0] > 1.5 and nested[1] < 1.05
    assert np.isnan(diagnostics.rhat_nested(mixed, [8])).all()  # one superchain: undefined
    with pytest.raises(ValueError, match="add up to the number of chains"):
        diagnostics.rhat_nested(mixed, [4, 3])


def test_threaded_blocks_give_the_numbers_of_one_block(monkeypatch) -> None:
    # 64 chains x 400 draws x 9 parameters is above THREADED_SIZE: the parameters are spread
    # over blocks (and threads, where the process may use more than one core). A parameter's
    # statistics must not depend on the block it fell in, and must still match ArviZ.
    rng = np.random.default_rng(17)
    draws = np.concatenate(
        [mixed_draws(64, 400, seed=17), np.round(rng.normal(size=(64, 400, 2)), 1),
         np.full((64, 400, 1), 2.5)],
        axis=-1,
    )  # fmt: skip
    monkeypatch.setattr(blocks, "usable_cores", lambda: 3)
    workers, bounds = blocks.parameter_blocks(draws.shape[2], draws.size)
    assert workers == 3 and len(bounds) - 1 == draws.shape[2]  # one parameter a block
    threaded = diagnostics.all_diagnostics(draws, superchain_sizes=[32, 32])
    monkeypatch.setattr(blocks, "THREADED_SIZE", draws.size)
    whole = diagnostics.all_diagnostics(draws, superchain_sizes=[32, 32])
    for key in threaded:
        np.testing.assert_array_equal(threaded[key], whole[key], err_msg=key)
    assert_matches_arviz(draws)


@pytest.mark.parametrize("fft_values", [64, 1 << 15])
def test_mean_autocovariance_in_batches_of_chains_and_parameters(monkeypatch, fft_values) -> None:
    # 64: every FFT call takes one chain of one parameter; 1 << 15: all chains of a parameter
    # and several parameters in one call.
    draws = np.random.default_rng(18).normal(size=(300, 40, 5)).cumsum(axis=1)
    monkeypatch.setattr(diagnostics, "FFT_VALUES", fft_values)
    expected = diagnostics.autocovariance(draws).mean(axis=0)
    ours = diagnostics.mean_autocovariance(draws)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
