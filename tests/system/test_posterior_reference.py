"""Eight schools (non-centred) against posteriordb's reference draws (Stan, 10 x 1000).

Tolerances come from Monte Carlo standard errors: ours from the run's own bulk ESS, the
reference's from its ESS; a mean or sd passes when within 4 combined standard errors (a false
alarm rate of about 6e-5 per comparison).
"""

from __future__ import annotations

import json
import zipfile

import arviz as az
import numpy as np
import pytest
from helpers import EIGHT_SCHOOLS, REFERENCE, run_ranks

from mpi_pymc.diagnostics import maths as diagnostics

SCHOOLS = ["Choate", "Deerfield", "Phillips Andover", "Phillips Exeter", "Hotchkiss",
           "Lawrenceville", "St. Paul's", "Mt. Hermon"]  # fmt: skip


def _reference() -> dict[str, np.ndarray]:
    path = REFERENCE / "eight_schools_noncentered.draws.json.zip"
    if not path.exists():
        pytest.skip(f"reference draws not found at {path}")
    with zipfile.ZipFile(path) as z:
        chains = json.loads(z.read(z.namelist()[0]))
    return {name: np.array([c[name] for c in chains]) for name in chains[0]}


def _mcse_mean_and_sd(draws: np.ndarray) -> tuple[float, float]:
    """MCSE of the mean and (delta method on squared deviations) of the sd; draws (chain, draw)."""
    x = draws[:, :, None]
    ess = float(diagnostics.ess_mean(x)[0])
    sd = float(x.std(ddof=1))
    sq = (x - x.mean()) ** 2
    ess_sq = float(diagnostics.ess_mean(sq)[0])
    mcse_sd = float(sq.std(ddof=1)) / np.sqrt(ess_sq) / (2 * sd)
    return sd / np.sqrt(ess), mcse_sd


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nuts", "numpyro", "hmc"])
def test_eight_schools_matches_posteriordb(tmp_path, sampler):
    reference = _reference()
    out = tmp_path / "es.h5"
    proc = run_ranks(
        2,
        ["run", str(EIGHT_SCHOOLS), "--chains", "4", "--draws", "1000", "--tune", "1000",
         "--target-accept", "0.9", "--seed", "20261127", "--out", str(out), "--sampler", sampler],
        cwd=tmp_path,
        timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    post = az.from_netcdf(out).posterior
    ours = {"mu": post.mu.values, "tau": post.tau.values}
    for i, school in enumerate(SCHOOLS):
        ours[f"theta[{i + 1}]"] = post.theta.sel(school=school).values
    for name, draws in ours.items():
        ref = reference[name]
        ours_mcse_mean, ours_mcse_sd = _mcse_mean_and_sd(draws)
        ref_mcse_mean, ref_mcse_sd = _mcse_mean_and_sd(ref)
        mean_tol = 4 * np.hypot(ours_mcse_mean, ref_mcse_mean)
        sd_tol = 4 * np.hypot(ours_mcse_sd, ref_mcse_sd)
        assert abs(draws.mean() - ref.mean()) < mean_tol, (name, draws.mean(), ref.mean())
        assert abs(draws.std(ddof=1) - ref.std(ddof=1)) < sd_tol, (name, draws.std(), ref.std())
