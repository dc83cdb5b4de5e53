"""Convergence diagnostics as plain NumPy/SciPy functions (no MPI, no ArviZ).

The maths of Vehtari et al. (2021), "Rank-normalization, folding, and localization: an improved
R-hat", written to give the same numbers as ArviZ (``arviz.rhat(method="rank")``,
``arviz.ess(method="bulk")``, ``arviz.ess(method="tail")`` at the 5% and 95% quantiles,
``arviz.mcse(method="mean")``), and nested R-hat (Margossian et al. 2024). Every function takes
draws shaped ``(chains, draws, n_params)`` and works on all parameters at once; the MPI driver in
:mod:`mpi_pymc.diagnostics_mpi` calls these on its slice of the parameters.

Conventions copied from ArviZ, on purpose:

- splitting drops the middle draw when the draw count is odd;
- rank normalisation pools the split chains of one parameter (average ranks for ties) and maps
  rank ``r`` of ``S`` values to ``Phi^-1((r - 3/8) / (S + 1/4))``;
- quantiles are type 7 (NumPy's ``"linear"``);
- fewer than 4 draws, or a NaN among a parameter's draws, gives NaN; R-hat needs 2 chains;
- a constant parameter has R-hat NaN and ESS equal to the number of split draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import special
from scipy.fftpack import next_fast_len  # ArviZ pads its FFT to this length; keep the same.

from mpi_pymc.topology import usable_cores  # a pinned rank's own cores, not the node's

MIN_DRAWS = 4
TAIL_PROBS = (0.05, 0.95)
STAT_KEYS = ("mean", "sd", "mcse_mean", "r_hat", "ess_bulk", "ess_tail", "r_hat_nested")
_BLOM_OFFSET = 3 / 8


def _as_draws(draws: np.ndarray) -> np.ndarray:
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3:
        raise ValueError(
            f"draws must be shaped (chains, draws, n_params), got an array of shape {draws.shape}"
        )
    return draws


def _python_max(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Elementwise ``max(first, second)`` with Python's NaN behaviour, as ArviZ calls it."""
    return np.where(second > first, second, first)


def _python_min(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Elementwise ``min(first, second)`` with Python's NaN behaviour, as ArviZ calls it."""
    return np.where(second < first, second, first)


def _invalid_params(draws: np.ndarray, min_chains: int) -> np.ndarray:
    """Parameters ArviZ answers with NaN: a NaN draw, too few draws or too few chains."""
    too_small = draws.shape[1] < MIN_DRAWS or draws.shape[0] < min_chains
    return np.isnan(draws).any(axis=(0, 1)) | too_small


def _without_nan(draws: np.ndarray) -> np.ndarray:
    """Zero out NaN draws so the maths runs quietly; callers mask those parameters to NaN."""
    return np.where(np.isnan(draws), 0.0, draws) if np.isnan(draws).any() else draws


def split_chains(draws: np.ndarray) -> np.ndarray:
    """Split every chain in half: ``(chains, draws, p) -> (2 * chains, draws // 2, p)``.

    First halves of all chains come first, then the second halves. With an odd draw count the
    middle draw is dropped, as ArviZ does.
    """
    draws = _as_draws(draws)
    n_draws = draws.shape[1]
    half = n_draws // 2
    return np.concatenate((draws[:, :half], draws[:, n_draws - half :]), axis=0)


def rank_normalize(draws: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each parameter (all chains and draws together).

    Ties get their average rank; rank ``r`` of ``S`` values becomes
    ``Phi^-1((r - 3/8) / (S - 2 * 3/8 + 1))`` (Blom's offset).

    One sort per parameter, the parameters spread over threads (NumPy's sort lets go of the
    GIL); without ties the scores are one table of ``S`` normal quantiles put in sorted order,
    so only tied groups need quantiles of their own. (For 1024 chains x 500 draws x 55
    parameters on 2 cores, the two calls in :func:`all_diagnostics` took 12.7 s through
    ``scipy.stats.rankdata`` and ``norm.ppf``, and 2.4 s this way.)
    """
    draws = _as_draws(draws)
    n_chains, n_draws, n_params = draws.shape
    size = n_chains * n_draws
    columns = np.ascontiguousarray(draws.reshape(size, n_params).T)
    scale = size - 2 * _BLOM_OFFSET + 1
    table = special.ndtri((np.arange(1, size + 1) - _BLOM_OFFSET) / scale)
    scores = np.empty_like(columns)

    def one(param: int) -> None:
        values = columns[param]
        order = np.argsort(values)
        ordered = values[order]
        sorted_scores = table  # only read
        new_value = np.empty(size, dtype=bool)
        new_value[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new_value[1:])
        if not new_value.all():  # ties: every member of a group gets the group's mean rank
            starts = np.flatnonzero(new_value)
            stops = np.append(starts[1:], size)
            group = np.cumsum(new_value) - 1
            mean_rank = (starts + stops + 1) / 2.0  # 1-based ranks start+1 .. stop
            sorted_scores = special.ndtri((mean_rank[group] - _BLOM_OFFSET) / scale)
        scores[param, order] = sorted_scores

    workers = min(n_params, usable_cores(), 16)
    if workers > 1 and size * n_params > 100_000:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(n_params)))
    else:
        for param in range(n_params):
            one(param)
    return scores.T.reshape(draws.shape)


def _gelman_rubin(draws: np.ndarray) -> np.ndarray:
    """Classic (unsplit) R-hat of the chains as given; 0/0 for a constant parameter gives NaN."""
    n_draws = draws.shape[1]
    if n_draws < 2:
        return np.full(draws.shape[2], np.nan)
    chain_mean = draws.mean(axis=1)
    chain_var = draws.var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = n_draws * chain_mean.var(axis=0, ddof=1)
        within = chain_var.mean(axis=0)
        return np.sqrt((between / within + n_draws - 1) / n_draws)


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split R-hat without rank normalisation (ArviZ ``rhat(method="split")``)."""
    draws = _as_draws(draws)
    invalid = _invalid_params(draws, min_chains=2)
    result = _gelman_rubin(split_chains(_without_nan(draws)))
    return np.where(invalid, np.nan, result)


def _fold(split: np.ndarray) -> np.ndarray:
    """``|x - median|`` with the median of the split draws, as ``arviz.rhat`` folds."""
    return np.abs(split - np.median(split, axis=(0, 1), keepdims=True))


def rhat_rank(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat: the larger of bulk and folded R-hat (ArviZ ``method="rank"``).

    The fold is ``|x - median|`` taken over the split draws (for odd draw counts the median
    therefore leaves out the middle draw, as ``arviz.rhat`` does).
    """
    draws = _as_draws(draws)
    invalid = _invalid_params(draws, min_chains=2)
    split = split_chains(_without_nan(draws))
    rank_rhat = _rank_rhat(rank_normalize(split), rank_normalize(_fold(split)))
    return np.where(invalid, np.nan, rank_rhat)


def _rank_rhat(bulk_scores: np.ndarray, fold_scores: np.ndarray) -> np.ndarray:
    return _python_max(_gelman_rubin(bulk_scores), _gelman_rubin(fold_scores))


def autocovariance(draws: np.ndarray) -> np.ndarray:
    """Biased autocovariance of every chain at every lag, along the draws axis, via FFT."""
    draws = np.asarray(draws, dtype=float)
    n_draws = draws.shape[1]
    fft_len = next_fast_len(2 * n_draws)
    centred = draws - draws.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=fft_len, axis=1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=fft_len, axis=1)[:, :n_draws] / n_draws


def mean_autocovariance(draws: np.ndarray) -> np.ndarray:
    """``autocovariance(draws).mean(axis=0)``, shaped ``(lags, n_params)``, computed faster.

    The inverse FFT is linear, so it runs once per parameter on the chains' mean power
    spectrum rather than once per chain, and every FFT runs along contiguous memory.
    """
    draws = np.asarray(draws, dtype=float)
    n_chains, n_draws, n_params = draws.shape
    fft_len = next_fast_len(2 * n_draws)
    view = np.moveaxis(draws, 1, 2)  # (chains, params, draws)
    # One new C-ordered array (the FFTs then run along contiguous memory); draws stay as given.
    series = np.subtract(view, view.mean(axis=2, keepdims=True), order="C")
    power = np.zeros((n_params, fft_len // 2 + 1))
    for chain in range(n_chains):
        spectrum = np.fft.rfft(series[chain], n=fft_len, axis=1)
        power += spectrum.real**2 + spectrum.imag**2
    power /= n_chains
    return np.fft.irfft(power, n=fft_len, axis=1)[:, :n_draws].T / n_draws


def ess_of_chains(draws: np.ndarray) -> np.ndarray:
    """ESS of the chains exactly as given (no splitting, no ranks): ArviZ's ``_ess``.

    Autocorrelations are combined across chains (Vehtari et al. 2021, eq. 10), truncated by
    Geyer's initial positive sequence on pairs of lags and made monotone by Geyer's initial
    monotone sequence. Following ArviZ: when the sum stops at a pair whose even lag is still
    positive, that lag is kept (the antithetic correction); ``tau_hat`` is floored at
    ``1 / log10(chains * draws)``; a parameter whose range is below float resolution has ESS equal
    to ``chains * draws``.
    """
    draws = np.asarray(draws, dtype=float)
    n_chains, n_draws, n_params = draws.shape
    total = n_chains * n_draws
    if n_draws < 2:
        return np.full(n_params, np.nan)
    columns = np.arange(n_params)
    constant = (draws.max(axis=(0, 1)) - draws.min(axis=(0, 1))) < np.finfo(float).resolution

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_acov = mean_autocovariance(draws)  # (lags, params)
        mean_var = mean_acov[0] * n_draws / (n_draws - 1.0)
        var_plus = mean_var * (n_draws - 1.0) / n_draws
        if n_chains > 1:
            var_plus = var_plus + draws.mean(axis=1).var(axis=0, ddof=1)

        def rho(lag: int) -> np.ndarray:
            return 1.0 - (mean_var - mean_acov[lag]) / var_plus

        rho_hat = np.zeros((n_draws, n_params))
        rho_hat[0] = 1.0
        rho_even = np.ones(n_params)
        rho_odd = rho(1)
        rho_hat[1] = rho_odd

        # Initial positive sequence. Parameters advance in lockstep until their pair sum stops
        # being positive; `stop` is the loop counter each one ended with.
        stop = np.ones(n_params, dtype=int)
        active = np.ones(n_params, dtype=bool)
        t = 1
        while t < n_draws - 3:
            active &= (rho_even + rho_odd) > 0.0
            if not active.any():
                break
            rho_even = np.where(active, rho(t + 1), rho_even)
            rho_odd = np.where(active, rho(t + 2), rho_odd)
            keep = active & ((rho_even + rho_odd) >= 0)
            rho_hat[t + 1] = np.where(keep, rho_even, rho_hat[t + 1])
            rho_hat[t + 2] = np.where(keep, rho_odd, rho_hat[t + 2])
            stop[active] = t + 2
            t += 2
        max_t = stop - 2
        last = max_t + 1
        rho_hat[last, columns] = np.where(rho_even > 0, rho_even, rho_hat[last, columns])

        # Initial monotone sequence, pair by pair, each pair capped by the previous one.
        t = 1
        while t <= max_t.max() - 2:
            inside = t <= max_t - 2
            previous = rho_hat[t - 1] + rho_hat[t]
            capped = inside & ((rho_hat[t + 1] + rho_hat[t + 2]) > previous)
            rho_hat[t + 1] = np.where(capped, previous / 2.0, rho_hat[t + 1])
            rho_hat[t + 2] = np.where(capped, previous / 2.0, rho_hat[t + 2])
            t += 2

        lags = np.arange(n_draws)[:, None]
        tau_hat = (
            -1.0 + 2.0 * np.where(lags <= max_t, rho_hat, 0.0).sum(axis=0) + rho_hat[last, columns]
        )
        tau_hat = np.maximum(tau_hat, 1 / np.log10(total))
        ess = total / tau_hat
    ess = np.where(np.isnan(rho_hat).any(axis=0), np.nan, ess)
    return np.where(constant, float(total), ess)


def ess_mean(draws: np.ndarray) -> np.ndarray:
    """ESS of the split chains on the original scale (ArviZ ``ess(method="mean")``)."""
    draws = _as_draws(draws)
    invalid = _invalid_params(draws, min_chains=1)
    return np.where(invalid, np.nan, ess_of_chains(split_chains(_without_nan(draws))))


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS: ESS of the rank-normalised split chains (ArviZ ``ess(method="bulk")``)."""
    draws = _as_draws(draws)
    invalid = _invalid_params(draws, min_chains=1)
    result = ess_of_chains(rank_normalize(split_chains(_without_nan(draws))))
    return np.where(invalid, np.nan, result)


def quantiles(draws: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Type 7 quantiles of each parameter over all chains and draws: shape ``(len(probs), p)``."""
    return np.quantile(_as_draws(draws), np.asarray(probs, dtype=float), axis=(0, 1))


def ess_tail(draws: np.ndarray, probs: tuple[float, float] = TAIL_PROBS) -> np.ndarray:
    """Tail ESS: the smaller ESS of the split indicators ``I(x <= q_low)`` and ``I(x <= q_high)``.

    The quantiles are type 7 over all draws of a parameter (odd middle draw included), the
    indicators are then split like any chain. ArviZ 1.x wants ``prob=(0.05, 0.95)`` to give this;
    its default for xarray input follows ``rcParams["stats.ci_prob"]`` instead.
    """
    draws = _as_draws(draws)
    invalid = _invalid_params(draws, min_chains=1)
    return np.where(invalid, np.nan, _tail_ess(_without_nan(draws), probs))


def _tail_ess(draws: np.ndarray, probs: tuple[float, float]) -> np.ndarray:
    if draws.shape[1] < 2:
        return np.full(draws.shape[2], np.nan)
    low, high = quantiles(draws, probs)
    ess_low = ess_of_chains(split_chains(draws <= low))
    ess_high = ess_of_chains(split_chains(draws <= high))
    return _python_min(ess_low, ess_high)


def posterior_mean(draws: np.ndarray) -> np.ndarray:
    """Mean over all chains and draws."""
    return _as_draws(draws).mean(axis=(0, 1))


def posterior_sd(draws: np.ndarray) -> np.ndarray:
    """Standard deviation over all chains and draws, ``ddof=1`` like ArviZ's summary."""
    draws = _as_draws(draws)
    n_chains, n_draws, n_params = draws.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        return draws.reshape(n_chains * n_draws, n_params).std(axis=0, ddof=1)


def _mcse_from(draws: np.ndarray, ess_mean_value: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return posterior_sd(draws) / np.sqrt(ess_mean_value)


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean: ``sd / sqrt(ess_mean)`` (ArviZ ``mcse``)."""
    draws = _as_draws(draws)
    return _mcse_from(draws, ess_mean(draws))


def _superchain_ids(n_chains: int, superchain_sizes: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(superchain_sizes, dtype=int)
    if sizes.ndim != 1 or (sizes < 1).any() or sizes.sum() != n_chains:
        raise ValueError(
            f"superchain_sizes {list(superchain_sizes)} must be positive group sizes that add up "
            f"to the number of chains ({n_chains})"
        )
    return np.repeat(np.arange(sizes.size), sizes)


def _nested_rhat_of_chains(draws: np.ndarray, superchain_ids: np.ndarray) -> np.ndarray:
    """Nested R-hat formula on the chains as given (see :func:`rhat_nested`)."""
    groups = np.unique(superchain_ids)
    if draws.shape[1] < 2 or groups.size < 2:
        return np.full(draws.shape[2], np.nan)
    chain_mean = draws.mean(axis=1)
    chain_var = draws.var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        superchain_mean = np.stack([chain_mean[superchain_ids == k].mean(axis=0) for k in groups])
        within_superchain = np.stack(
            [
                chain_var[superchain_ids == k].mean(axis=0)
                + (
                    chain_mean[superchain_ids == k].var(axis=0, ddof=1)
                    if (superchain_ids == k).sum() > 1
                    else 0.0
                )
                for k in groups
            ]
        ).mean(axis=0)
        between_superchain = superchain_mean.var(axis=0, ddof=1)
        return np.sqrt(1.0 + between_superchain / within_superchain)


def rhat_nested(draws: np.ndarray, superchain_sizes: Sequence[int]) -> np.ndarray:
    """Rank-normalised split nested R-hat (Margossian et al. 2024), as ArviZ-stats computes it.

    Superchain ``k`` is the next ``superchain_sizes[k]`` consecutive chains. Chains are split in
    half (each half stays in its chain's superchain) and rank-normalised as for
    :func:`rhat_rank`. With ``M_k`` half-chains in superchain ``k``, half-chain means ``m_kj`` and
    variances ``s2_kj`` (``ddof=1``), and ``K`` superchains::

        mean_k = mean_j m_kj
        B_k    = var_j(m_kj, ddof=1)        (0 when M_k == 1)
        W_k    = mean_j s2_kj
        B_nu   = var_k(mean_k, ddof=1)
        W_nu   = mean_k(W_k + B_k)
        nested R-hat = sqrt(1 + B_nu / W_nu)

    computed for the rank-normalised draws and for the rank-normalised folded draws
    ``|x - median|``; the larger is returned. With equal group sizes this is exactly
    ``arviz_stats.rhat_nested(method="rank")``; unequal sizes use the same formula, each
    superchain weighted equally. One superchain (or one chain) gives NaN.
    """
    draws = _as_draws(draws)
    ids = _superchain_ids(draws.shape[0], superchain_sizes)
    invalid = _invalid_params(draws, min_chains=2)
    split = split_chains(_without_nan(draws))
    nested = _nested_rank_rhat(rank_normalize(split), rank_normalize(_fold(split)), ids)
    return np.where(invalid, np.nan, nested)


def _nested_rank_rhat(
    bulk_scores: np.ndarray, fold_scores: np.ndarray, superchain_ids: np.ndarray
) -> np.ndarray:
    # Both halves of a chain stay in that chain's superchain.
    split_ids = np.concatenate((superchain_ids, superchain_ids))
    bulk = _nested_rhat_of_chains(bulk_scores, split_ids)
    tail = _nested_rhat_of_chains(fold_scores, split_ids)
    return _python_max(bulk, tail)


def all_diagnostics(
    draws: np.ndarray, superchain_sizes: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Every summary statistic for every parameter, sharing the split and rank work.

    Keys: mean, sd, mcse_mean, r_hat, ess_bulk, ess_tail and, when ``superchain_sizes`` is
    given, r_hat_nested. Each value has shape ``(n_params,)``.
    """
    draws = _as_draws(draws)
    n_chains = draws.shape[0]
    no_draws = _invalid_params(draws, min_chains=1)
    no_chains = _invalid_params(draws, min_chains=2)
    clean = _without_nan(draws)
    split = split_chains(clean)
    bulk_scores = rank_normalize(split)
    fold_scores = rank_normalize(_fold(split))

    ess_mean_value = np.where(no_draws, np.nan, ess_of_chains(split))
    result = {
        "mean": posterior_mean(draws),
        "sd": posterior_sd(draws),
        "mcse_mean": _mcse_from(draws, ess_mean_value),
        "r_hat": np.where(no_chains, np.nan, _rank_rhat(bulk_scores, fold_scores)),
        "ess_bulk": np.where(no_draws, np.nan, ess_of_chains(bulk_scores)),
        "ess_tail": np.where(no_draws, np.nan, _tail_ess(clean, TAIL_PROBS)),
    }
    if superchain_sizes is not None:
        ids = _superchain_ids(n_chains, superchain_sizes)
        nested = _nested_rank_rhat(bulk_scores, fold_scores, ids)
        result["r_hat_nested"] = np.where(no_chains, np.nan, nested)
    return result


def _worst_first(stats: Mapping[str, np.ndarray]) -> np.ndarray:
    """Order: highest R-hat first (NaN R-hat counts as no evidence), then lowest ESS."""
    r_hat = np.nan_to_num(np.asarray(stats["r_hat"], dtype=float), nan=-np.inf)
    lowest_ess = np.fmin(
        np.asarray(stats["ess_bulk"], dtype=float), np.asarray(stats["ess_tail"], dtype=float)
    )
    lowest_ess = np.nan_to_num(lowest_ess, nan=np.inf)
    return np.lexsort((lowest_ess, -r_hat))


def summary_table(names: Sequence[str], stats: Mapping[str, np.ndarray]) -> str:
    """Fixed-width text table, one row per parameter, worst converged first.

    Columns: parameter, mean, sd, mcse_mean, r_hat, ess_bulk, ess_tail. Rows are sorted by
    highest R-hat (NaN last), then by lowest of bulk and tail ESS.
    """
    if len(names) != len(stats["r_hat"]):
        raise ValueError(f"{len(names)} names for {len(stats['r_hat'])} parameters")
    name_width = max([len("parameter"), *(len(name) for name in names)])
    columns = [
        ("mean", "{:.4g}"),
        ("sd", "{:.4g}"),
        ("mcse_mean", "{:.2g}"),
        ("r_hat", "{:.3f}"),
        ("ess_bulk", "{:.0f}"),
        ("ess_tail", "{:.0f}"),
    ]
    width = 10
    lines = [f"{'parameter':<{name_width}}" + "".join(f" {key:>{width}}" for key, _ in columns)]
    for index in _worst_first(stats):
        cells = []
        for key, fmt in columns:
            value = float(stats[key][index])
            cells.append(f" {'nan' if np.isnan(value) else fmt.format(value):>{width}}")
        lines.append(f"{names[index]:<{name_width}}" + "".join(cells))
    return "\n".join(lines)


def _name_list(names: Sequence[str], indices: np.ndarray, most: int) -> str:
    listed = ", ".join(names[i] for i in indices[:most])
    if len(indices) > most:
        listed += f" and {len(indices) - most} more"
    return listed


def convergence_warnings(
    stats: Mapping[str, np.ndarray],
    chains: int,
    names: Sequence[str] | None = None,
    *,
    max_r_hat: float = 1.01,
    min_ess_per_chain: float = 100.0,
    most_listed: int = 10,
) -> list[str]:
    """Plain-English warnings: R-hat above ``max_r_hat``, bulk or tail ESS below 100 per chain.

    NaN values (a constant parameter, a single chain) raise no warning. Parameters are named by
    ``names`` (default ``param[i]``), worst first, at most ``most_listed`` of them per warning.
    """
    r_hat = np.asarray(stats["r_hat"], dtype=float)
    if names is None:
        names = [f"param[{i}]" for i in range(r_hat.size)]
    warnings = []
    with np.errstate(invalid="ignore"):
        high = np.flatnonzero(r_hat > max_r_hat)
    if high.size:
        high = high[np.argsort(-r_hat[high], kind="stable")]
        warnings.append(
            f"R-hat is above {max_r_hat} for {high.size} parameter(s) "
            f"({_name_list(names, high, most_listed)}; worst {r_hat[high[0]]:.3f}): the chains "
            "disagree, so they have not converged to one distribution. Run longer chains or "
            "reparametrise the model before using these draws."
        )
    min_ess = min_ess_per_chain * chains
    for key, label in (("ess_bulk", "Bulk"), ("ess_tail", "Tail")):
        ess = np.asarray(stats[key], dtype=float)
        with np.errstate(invalid="ignore"):
            low = np.flatnonzero(ess < min_ess)
        if low.size:
            low = low[np.argsort(ess[low], kind="stable")]
            what = "means and medians" if key == "ess_bulk" else "tail quantiles (5%, 95%)"
            warnings.append(
                f"{label} ESS is below {min_ess:g} ({min_ess_per_chain:g} per chain x {chains} "
                f"chains) for {low.size} parameter(s) ({_name_list(names, low, most_listed)}; "
                f"lowest {ess[low[0]]:.0f}): estimates of {what} are unreliable. Draw more "
                "samples."
            )
    return warnings
