"""Convergence diagnostics as plain NumPy/SciPy functions (no MPI, no ArviZ).

The maths of Vehtari et al. (2021), "Rank-normalization, folding, and localization: an improved
R-hat", written to give the same numbers as ArviZ (``arviz.rhat(method="rank")``,
``arviz.ess(method="bulk")``, ``arviz.ess(method="tail")`` at the 5% and 95% quantiles,
``arviz.mcse(method="mean")``), and nested R-hat (Margossian et al. 2024). Every function takes
draws shaped ``(chains, draws, n_params)`` and works on all parameters at once; the MPI driver in
:mod:`mpi_pymc.diagnostics.collective` calls :func:`diagnostics_by_parameter` on its slice of the
parameters.

Inside, the draws are laid out parameters first, ``(n_params, chains, draws)``, and a large
input is cut into blocks of parameters that run on the rank's cores as threads (NumPy lets go
of the GIL in its sorts, FFTs and array loops): a parameter's draws then sit together in memory,
and its one sort gives its bulk ranks, the median its fold needs and its tail quantiles. For
1024 chains x 500 draws x 55 parameters (a many-chain GPU run) this took 7.8 s on 2 cores
before and 3.4 s after (``benchmarks/diagnostics_time.py``).

Conventions copied from ArviZ, on purpose:

- splitting drops the middle draw when the draw count is odd;
- rank normalisation pools the split chains of one parameter (average ranks for ties) and maps
  rank ``r`` of ``S`` values to ``Phi^-1((r - 3/8) / (S + 1/4))``;
- quantiles are type 7 (NumPy's ``"linear"``);
- fewer than 4 draws, or a NaN among a parameter's draws, gives NaN; R-hat needs 2 chains;
- a constant parameter has R-hat NaN and ESS equal to the number of split draws."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import special
from scipy.fftpack import next_fast_len  # ArviZ pads its FFT to this length; keep the same.

from mpi_pymc.diagnostics.blocks import by_blocks

MIN_DRAWS = 4


TAIL_PROBS = (0.05, 0.95)


STAT_KEYS = ("mean", "sd", "mcse_mean", "r_hat", "ess_bulk", "ess_tail", "r_hat_nested")


_BLOM_OFFSET = 3 / 8


# Complex values of one batch of forward FFTs (512 KiB).
FFT_VALUES = 1 << 15


def _as_draws(draws: np.ndarray) -> np.ndarray:
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3:
        raise ValueError(
            f"draws must be shaped (chains, draws, n_params), got an array of shape {draws.shape}"
        )
    return draws


def _rows(draws: np.ndarray) -> np.ndarray:
    """``(chains, draws, n_params)`` -> ``(n_params, chains, draws)``, a view: the layout the
    maths below works in, one parameter's draws together in memory once a block is copied."""
    return np.moveaxis(draws, 2, 0)


def _python_max(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Elementwise ``max(first, second)`` with Python's NaN behaviour, as ArviZ calls it."""
    return np.where(second > first, second, first)


def _python_min(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Elementwise ``min(first, second)`` with Python's NaN behaviour, as ArviZ calls it."""
    return np.where(second < first, second, first)


def _invalid(rows: np.ndarray, min_chains: int) -> np.ndarray:
    """Parameters ArviZ answers with NaN: a NaN draw, too few draws or too few chains."""
    too_small = rows.shape[2] < MIN_DRAWS or rows.shape[1] < min_chains
    return np.isnan(rows).any(axis=(1, 2)) | too_small


def _without_nan(rows: np.ndarray) -> np.ndarray:
    """Zero out NaN draws so the maths runs quietly; callers mask those parameters to NaN."""
    return np.where(np.isnan(rows), 0.0, rows) if np.isnan(rows).any() else rows


def split_chains(draws: np.ndarray) -> np.ndarray:
    """Split every chain in half: ``(chains, draws, p) -> (2 * chains, draws // 2, p)``.

    First halves of all chains come first, then the second halves. With an odd draw count the
    middle draw is dropped, as ArviZ does.
    """
    draws = _as_draws(draws)
    return np.moveaxis(_split(_rows(draws)), 0, 2)


def _split(rows: np.ndarray) -> np.ndarray:
    """:func:`split_chains` on ``(n_params, chains, draws)``, as a new contiguous array."""
    n_draws = rows.shape[2]
    half = n_draws // 2
    return np.concatenate((rows[:, :, :half], rows[:, :, n_draws - half :]), axis=1)


def _normal_scores(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores of the pooled ranks of each parameter, and its draws sorted.

    ``rows`` is ``(n_params, chains, draws)``; returns scores of that shape and the sorted
    values, ``(n_params, chains * draws)``. Ties get their average rank; rank ``r`` of ``S``
    values becomes ``Phi^-1((r - 3/8) / (S - 2 * 3/8 + 1))`` (Blom's offset). One sort per
    parameter: without ties the scores are one table of ``S`` normal quantiles put in sorted
    order, so only tied groups need quantiles of their own. (For 1024 chains x 500 draws x 55
    parameters on 2 cores, ``scipy.stats.rankdata`` and ``norm.ppf`` took 12.7 s for the two
    rank normalisations of :func:`all_diagnostics`, and 2.4 s this way.)
    """
    n_params = rows.shape[0]
    size = rows.shape[1] * rows.shape[2]
    values = rows.reshape(n_params, size)
    scale = size - 2 * _BLOM_OFFSET + 1
    table = special.ndtri((np.arange(1, size + 1) - _BLOM_OFFSET) / scale)
    scores = np.empty((n_params, size))
    ordered = np.empty((n_params, size))
    for param in range(n_params):
        order = np.argsort(values[param])
        ordered[param] = values[param][order]
        scores[param, order] = table
        new_value = np.empty(size, dtype=bool)
        new_value[:1] = True
        np.not_equal(ordered[param, 1:], ordered[param, :-1], out=new_value[1:])
        if not new_value.all():  # ties: every member of a group gets the group's mean rank
            starts = np.flatnonzero(new_value)
            sizes = np.diff(starts, append=size)
            tied = sizes > 1
            starts, sizes = starts[tied], sizes[tied]
            mean_rank = (starts + (starts + sizes) + 1) / 2.0  # 1-based ranks start+1 .. stop
            # Sorted positions of every tied group's members: start, start + 1, ..., stop - 1.
            members = np.arange(sizes.sum()) + np.repeat(starts - np.cumsum(sizes) + sizes, sizes)
            scores[param, order[members]] = np.repeat(
                special.ndtri((mean_rank - _BLOM_OFFSET) / scale), sizes
            )
    return scores.reshape(rows.shape), ordered


def rank_normalize(draws: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each parameter (all chains and draws together).

    Ties get their average rank; rank ``r`` of ``S`` values becomes
    ``Phi^-1((r - 3/8) / (S - 2 * 3/8 + 1))`` (Blom's offset).
    """
    draws = _as_draws(draws)
    return np.moveaxis(by_blocks(lambda rows: _normal_scores(rows)[0], _rows(draws)), 0, 2)


def _gelman_rubin(rows: np.ndarray) -> np.ndarray:
    """Classic (unsplit) R-hat of the chains as given; 0/0 for a constant parameter gives NaN."""
    n_draws = rows.shape[2]
    if n_draws < 2:
        return np.full(rows.shape[0], np.nan)
    chain_mean = rows.mean(axis=2)
    chain_var = rows.var(axis=2, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = n_draws * chain_mean.var(axis=1, ddof=1)
        within = chain_var.mean(axis=1)
        return np.sqrt((between / within + n_draws - 1) / n_draws)


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split R-hat without rank normalisation (ArviZ ``rhat(method="split")``)."""

    def block(rows: np.ndarray) -> np.ndarray:
        result = _gelman_rubin(_split(_without_nan(rows)))
        return np.where(_invalid(rows, min_chains=2), np.nan, result)

    return by_blocks(block, _rows(_as_draws(draws)))


class _Ranked(NamedTuple):
    """The split chains of a block of parameters and what rank-based statistics share."""

    split: np.ndarray  # (n_params, 2 * chains, draws // 2)
    bulk: np.ndarray  # normal scores of the split draws
    fold: np.ndarray  # normal scores of |split - median|, the median of the split draws
    ordered: np.ndarray  # the split draws of each parameter, sorted


def _ranked(clean: np.ndarray) -> _Ranked:
    """Split, rank-normalise and fold NaN-free ``(n_params, chains, draws)`` draws.

    The fold is ``|x - median|`` with the median of the split draws (for odd draw counts it
    therefore leaves out the middle draw, as ``arviz.rhat`` does), read off the sort the bulk
    ranks already made.
    """
    split = _split(clean)
    bulk, ordered = _normal_scores(split)
    size = ordered.shape[1]
    if size:
        median = (ordered[:, (size - 1) // 2] + ordered[:, size // 2]) / 2.0  # np.median's
    else:
        median = np.full(ordered.shape[0], np.nan)
    fold, _ = _normal_scores(np.abs(split - median[:, None, None]))
    return _Ranked(split, bulk, fold, ordered)


def rhat_rank(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat: the larger of bulk and folded R-hat (ArviZ
    ``method="rank"``)."""

    def block(rows: np.ndarray) -> np.ndarray:
        ranked = _ranked(_without_nan(rows))
        result = _python_max(_gelman_rubin(ranked.bulk), _gelman_rubin(ranked.fold))
        return np.where(_invalid(rows, min_chains=2), np.nan, result)

    return by_blocks(block, _rows(_as_draws(draws)))


def autocovariance(draws: np.ndarray) -> np.ndarray:
    """Biased autocovariance of every chain at every lag, along the draws axis, via FFT."""
    draws = np.asarray(draws, dtype=float)
    n_draws = draws.shape[1]
    fft_len = next_fast_len(2 * n_draws)
    centred = draws - draws.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=fft_len, axis=1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=fft_len, axis=1)[:, :n_draws] / n_draws


def _mean_autocovariance(rows: np.ndarray) -> np.ndarray:
    """Mean over chains of the chains' autocovariances, ``(lags, n_params)``, of
    ``(n_params, chains, draws)``.

    The inverse FFT is linear, so it runs once per parameter on the chains' mean power
    spectrum rather than once per chain. The forward FFTs run on as many series at a time as
    keep a call's spectra about ``FFT_VALUES`` complex values (cache-sized): several parameters
    of a few chains, or a slice of the chains of one parameter of many.
    """
    n_params, n_chains, n_draws = rows.shape
    fft_len = next_fast_len(2 * n_draws)
    frequencies = fft_len // 2 + 1
    chains_per_call = max(1, min(n_chains, FFT_VALUES // frequencies))
    params_per_call = max(1, FFT_VALUES // (frequencies * n_chains))
    result = np.empty((n_draws, n_params))
    for first in range(0, n_params, params_per_call):
        block = rows[first : first + params_per_call]
        power = np.zeros((block.shape[0], frequencies))
        for chain in range(0, n_chains, chains_per_call):
            part = block[:, chain : chain + chains_per_call]
            series = part - part.mean(axis=2, keepdims=True)
            spectrum = np.fft.rfft(series, n=fft_len, axis=2)
            power += (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
        power /= n_chains
        autocovariance = np.fft.irfft(power, n=fft_len, axis=1)[:, :n_draws] / n_draws
        result[:, first : first + block.shape[0]] = autocovariance.T
    return result


def mean_autocovariance(draws: np.ndarray) -> np.ndarray:
    """``autocovariance(draws).mean(axis=0)``, shaped ``(lags, n_params)``, computed faster."""
    return _mean_autocovariance(np.ascontiguousarray(_rows(np.asarray(draws, dtype=float))))


def ess_of_chains(draws: np.ndarray) -> np.ndarray:
    """ESS of the chains exactly as given (no splitting, no ranks): ArviZ's ``_ess``.

    Autocorrelations are combined across chains (Vehtari et al. 2021, eq. 10), truncated by
    Geyer's initial positive sequence on pairs of lags and made monotone by Geyer's initial
    monotone sequence. Following ArviZ: when the sum stops at a pair whose even lag is still
    positive, that lag is kept (the antithetic correction); ``tau_hat`` is floored at
    ``1 / log10(chains * draws)``; a parameter whose range is below float resolution has ESS equal
    to ``chains * draws``.
    """
    return by_blocks(_ess, _rows(np.asarray(draws, dtype=float)))


def _ess(rows: np.ndarray) -> np.ndarray:
    """:func:`ess_of_chains` of ``(n_params, chains, draws)``."""
    rows = np.asarray(rows, dtype=float)
    n_params, n_chains, n_draws = rows.shape
    total = n_chains * n_draws
    if n_draws < 2:
        return np.full(n_params, np.nan)
    columns = np.arange(n_params)
    constant = (rows.max(axis=(1, 2)) - rows.min(axis=(1, 2))) < np.finfo(float).resolution

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_acov = _mean_autocovariance(rows)  # (lags, params)
        mean_var = mean_acov[0] * n_draws / (n_draws - 1.0)
        var_plus = mean_var * (n_draws - 1.0) / n_draws
        if n_chains > 1:
            var_plus = var_plus + rows.mean(axis=2).var(axis=1, ddof=1)

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
        while t <= max_t.max(initial=0) - 2:
            inside = t <= max_t - 2
            previous = rho_hat[t - 1] + rho_hat[t]
            capped = inside & ((rho_hat[t + 1] + rho_hat[t + 2]) > previous)
            rho_hat[t + 1] = np.where(capped, previous / 2.0, rho_hat[t + 1])
            rho_hat[t + 2] = np.where(capped, previous / 2.0, rho_hat[t + 2])
            t += 2

        lags = np.arange(n_draws)[:, None]
        # Summed along contiguous rows, so the order of the sum (and a parameter's ESS to the
        # last bit) does not depend on how many parameters share the call.
        kept = np.ascontiguousarray(np.where(lags <= max_t, rho_hat, 0.0).T)
        tau_hat = -1.0 + 2.0 * kept.sum(axis=1) + rho_hat[last, columns]
        tau_hat = np.maximum(tau_hat, 1 / np.log10(total))
        ess = total / tau_hat
    ess = np.where(np.isnan(rho_hat).any(axis=0), np.nan, ess)
    return np.where(constant, float(total), ess)


def ess_mean(draws: np.ndarray) -> np.ndarray:
    """ESS of the split chains on the original scale (ArviZ ``ess(method="mean")``)."""

    def block(rows: np.ndarray) -> np.ndarray:
        result = _ess(_split(_without_nan(rows)))
        return np.where(_invalid(rows, min_chains=1), np.nan, result)

    return by_blocks(block, _rows(_as_draws(draws)))


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS: ESS of the rank-normalised split chains (ArviZ ``ess(method="bulk")``)."""

    def block(rows: np.ndarray) -> np.ndarray:
        result = _ess(_normal_scores(_split(_without_nan(rows)))[0])
        return np.where(_invalid(rows, min_chains=1), np.nan, result)

    return by_blocks(block, _rows(_as_draws(draws)))


def quantiles(draws: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Type 7 quantiles of each parameter over all chains and draws: shape ``(len(probs), p)``."""
    return np.quantile(_as_draws(draws), np.asarray(probs, dtype=float), axis=(0, 1))


def ess_tail(draws: np.ndarray, probs: tuple[float, float] = TAIL_PROBS) -> np.ndarray:
    """Tail ESS: the smaller ESS of the split indicators ``I(x <= q_low)`` and ``I(x <= q_high)``.

    The quantiles are type 7 over all draws of a parameter (odd middle draw included), the
    indicators are then split like any chain. ArviZ 1.x wants ``prob=(0.05, 0.95)`` to give this;
    its default for xarray input follows ``rcParams["stats.ci_prob"]`` instead.
    """

    def block(rows: np.ndarray) -> np.ndarray:
        clean = _without_nan(rows)
        result = _tail_ess(clean, _split(clean), None, probs)
        return np.where(_invalid(rows, min_chains=1), np.nan, result)

    return by_blocks(block, _rows(_as_draws(draws)))


def _tail_ess(
    clean: np.ndarray, split: np.ndarray, ordered: np.ndarray | None, probs: tuple[float, float]
) -> np.ndarray:
    """Tail ESS of NaN-free ``(n_params, chains, draws)`` and their split; ``ordered``, the
    split draws sorted, gives the quantiles without another pass when no draw was dropped."""
    n_params, _, n_draws = clean.shape
    if n_draws < 2:
        return np.full(n_params, np.nan)
    every_draw = ordered if ordered is not None and n_draws % 2 == 0 else clean
    low, high = np.quantile(every_draw.reshape(n_params, -1), probs, axis=1)
    ess_low = _ess(split <= low[:, None, None])
    ess_high = _ess(split <= high[:, None, None])
    return _python_min(ess_low, ess_high)


def _mean(rows: np.ndarray) -> np.ndarray:
    return rows.mean(axis=(1, 2))


def _sd(rows: np.ndarray) -> np.ndarray:
    """Standard deviation over all chains and draws, ``ddof=1`` like ArviZ's summary."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return rows.reshape(rows.shape[0], -1).std(axis=1, ddof=1)


def posterior_mean(draws: np.ndarray) -> np.ndarray:
    """Mean over all chains and draws."""
    return by_blocks(_mean, _rows(_as_draws(draws)))


def posterior_sd(draws: np.ndarray) -> np.ndarray:
    """Standard deviation over all chains and draws, ``ddof=1`` like ArviZ's summary."""
    return by_blocks(_sd, _rows(_as_draws(draws)))


def _mcse(rows: np.ndarray, ess_mean_value: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return _sd(rows) / np.sqrt(ess_mean_value)


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean: ``sd / sqrt(ess_mean)`` (ArviZ ``mcse``)."""

    def block(rows: np.ndarray) -> np.ndarray:
        ess = np.where(_invalid(rows, min_chains=1), np.nan, _ess(_split(_without_nan(rows))))
        return _mcse(rows, ess)

    return by_blocks(block, _rows(_as_draws(draws)))


def _superchain_ids(n_chains: int, superchain_sizes: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(superchain_sizes, dtype=int)
    if sizes.ndim != 1 or (sizes < 1).any() or sizes.sum() != n_chains:
        raise ValueError(
            f"superchain_sizes {list(superchain_sizes)} must be positive group sizes that add up "
            f"to the number of chains ({n_chains})"
        )
    return np.repeat(np.arange(sizes.size), sizes)


def _nested_rhat_of_chains(rows: np.ndarray, superchain_ids: np.ndarray) -> np.ndarray:
    """Nested R-hat formula on the chains of ``(n_params, chains, draws)`` as given (see
    :func:`rhat_nested`)."""
    groups = np.unique(superchain_ids)
    if rows.shape[2] < 2 or groups.size < 2:
        return np.full(rows.shape[0], np.nan)
    chain_mean = rows.mean(axis=2)
    chain_var = rows.var(axis=2, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # (n_params, superchains), reduced along its contiguous rows
        superchain_mean = np.stack(
            [chain_mean[:, superchain_ids == k].mean(axis=1) for k in groups], axis=1
        )
        within_superchain = np.stack(
            [
                chain_var[:, superchain_ids == k].mean(axis=1)
                + (
                    chain_mean[:, superchain_ids == k].var(axis=1, ddof=1)
                    if (superchain_ids == k).sum() > 1
                    else 0.0
                )
                for k in groups
            ],
            axis=1,
        ).mean(axis=1)
        between_superchain = superchain_mean.var(axis=1, ddof=1)
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

    def block(rows: np.ndarray) -> np.ndarray:
        nested = _nested_rank_rhat(_ranked(_without_nan(rows)), ids)
        return np.where(_invalid(rows, min_chains=2), np.nan, nested)

    return by_blocks(block, _rows(draws))


def _nested_rank_rhat(ranked: _Ranked, superchain_ids: np.ndarray) -> np.ndarray:
    # Both halves of a chain stay in that chain's superchain.
    split_ids = np.concatenate((superchain_ids, superchain_ids))
    bulk = _nested_rhat_of_chains(ranked.bulk, split_ids)
    tail = _nested_rhat_of_chains(ranked.fold, split_ids)
    return _python_max(bulk, tail)


def all_diagnostics(
    draws: np.ndarray, superchain_sizes: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Every summary statistic for every parameter, sharing the split and rank work.

    Keys: mean, sd, mcse_mean, r_hat, ess_bulk, ess_tail and, when ``superchain_sizes`` is
    given, r_hat_nested. Each value has shape ``(n_params,)``.
    """
    draws = _as_draws(draws)
    return diagnostics_by_parameter(_rows(draws), superchain_sizes)


def diagnostics_by_parameter(
    rows: np.ndarray, superchain_sizes: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """:func:`all_diagnostics` of draws laid out ``(n_params, chains, draws)``, as
    :mod:`mpi_pymc.diagnostics.collective` receives them (no transpose)."""
    ids = None if superchain_sizes is None else _superchain_ids(rows.shape[1], superchain_sizes)

    def block(rows: np.ndarray) -> dict[str, np.ndarray]:
        no_draws = _invalid(rows, min_chains=1)
        no_chains = _invalid(rows, min_chains=2)
        clean = _without_nan(rows)
        ranked = _ranked(clean)
        ess_mean_value = np.where(no_draws, np.nan, _ess(ranked.split))
        result = {
            "mean": _mean(rows),
            "sd": _sd(rows),
            "mcse_mean": _mcse(rows, ess_mean_value),
            "r_hat": np.where(
                no_chains,
                np.nan,
                _python_max(_gelman_rubin(ranked.bulk), _gelman_rubin(ranked.fold)),
            ),
            "ess_bulk": np.where(no_draws, np.nan, _ess(ranked.bulk)),
            "ess_tail": np.where(
                no_draws, np.nan, _tail_ess(clean, ranked.split, ranked.ordered, TAIL_PROBS)
            ),
        }
        if ids is not None:
            result["r_hat_nested"] = np.where(no_chains, np.nan, _nested_rank_rhat(ranked, ids))
        return result

    return by_blocks(block, rows)
