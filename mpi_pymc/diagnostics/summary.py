"""The summary a finished run prints: the per-parameter table (worst R-hat first) and the
convergence warnings, either the CLI's (naming the parameters) or pm.sample's own sentences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


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


# PyMC's own sentences (pymc/stats/convergence.py), so sample() reads as pm.sample does.
_PYMC_FEW_DRAWS = "The number of samples is too small to check convergence reliably."
_PYMC_ONE_CHAIN = (
    "Only one chain was sampled, this makes it impossible to run some convergence checks"
)
_PYMC_FEW_CHAINS = (
    "We recommend running at least 4 chains for robust computation of convergence diagnostics"
)
_PYMC_RHAT = (
    "The rhat statistic is larger than 1.01 for some parameters. This indicates problems "
    "during sampling. See https://arxiv.org/abs/1903.08008 for details"
)
_PYMC_ESS = (
    "The effective sample size per chain is smaller than 100 for some parameters.  A higher "
    "number is needed for reliable rhat and ess computation. See "
    "https://arxiv.org/abs/1903.08008 for details"
)


def divergence_warning(
    divergences: int, draws: int, target_accept: float | None = None
) -> list[str]:
    """The CLI's warning for divergent transitions after warmup (none when there are none).

    A divergence marks a region of high curvature the trajectory could not follow; the draws
    then under-represent it and their means can be biased whatever R-hat and ESS say (Betancourt
    2017, section 6.2). ``draws`` is the number of post-warmup draws of all chains together."""
    if not divergences:
        return []
    share = divergences / max(draws, 1)
    raise_it = f" from {target_accept:g}" if target_accept is not None else ""
    return [
        f"{divergences} divergent transition(s) after warmup ({share:.2%} of {draws} draws): "
        "the sampler could not follow the posterior's curvature somewhere, so these draws can "
        f"be biased even where R-hat and ESS look fine. Raise --target-accept{raise_it} "
        "(to 0.95 or 0.99, say) or reparametrise the model (a non-centred form of a hierarchy or "
        "a latent GP) before using them."
    ]


def pymc_warnings(
    stats: Mapping[str, np.ndarray], chains: int, draws: int, divergences: int
) -> list[str]:
    """The warnings ``pm.sample`` logs after sampling, in its words and order, from the same
    checks (divergences; too few draws or chains; max R-hat > 1.01; min bulk ESS per chain
    < 100). NaN values (a constant parameter) raise no warning, as in PyMC."""
    found = []
    if divergences:
        verb, word = ("was", "divergence") if divergences == 1 else ("were", "divergences")
        found.append(
            f"There {verb} {divergences} {word} after tuning. Increase `target_accept` or "
            "reparameterize."
        )
    if draws < 100:
        return [*found, _PYMC_FEW_DRAWS]
    if chains == 1:
        return [*found, _PYMC_ONE_CHAIN]
    if chains < 4:
        found.append(_PYMC_FEW_CHAINS)
    r_hat = np.asarray(stats["r_hat"], dtype=float)
    ess = np.asarray(stats["ess_bulk"], dtype=float)
    if r_hat.size and np.nanmax(r_hat, initial=-np.inf) > 1.01:
        found.append(_PYMC_RHAT)
    if ess.size and np.nanmin(ess, initial=np.inf) / chains < 100:
        found.append(_PYMC_ESS)
    return found
