"""Model coverage (issue #16): every model family in ``tests/coverage_models`` through the CLI
on 2 ranks, against ``pm.sample`` on the same model.

The references (``tests/coverage_models/references/<family>.json``) are written once by
``tests/coverage_models/make_references.py`` (4 x 1000 draws of numpyro's NUTS, or PyMC's own
where numpyro cannot translate the model). Each run here must reproduce their structure (the
posterior's variables, dims and coords, the sample stats, the observed_data and constant_data
variables, no transformed helpers) and, for every scalar element, the mean and sd within
Z_BOUND combined Monte Carlo standard errors: ours from the run's own draws, the reference's
from ArviZ. One reference serves both stacks (pymc 5 / ArviZ 0.x and pymc 6 / ArviZ 1.x).

Skipped unless ``--model-coverage`` is given (CI runs it as a job of its own).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from helpers import ROOT, run_ranks
from scipy import stats
from tolerances import SIGMAS, az

from mpi_pymc.diagnostics import maths as diagnostics

pytestmark = pytest.mark.coverage

MODELS = ROOT / "tests" / "coverage_models"
REFERENCES = MODELS / "references"
FAMILIES = sorted(
    p.stem for p in MODELS.glob("*.py") if p.stem != "make_references" and p.stem[0] != "_"
)
CHAINS, TUNE, DRAWS, SEED = 4, 400, 400, 20261205
REQUIRED_STATS = {"lp", "diverging", "energy", "step_size", "tree_depth", "n_steps",
                  "acceptance_rate"}  # fmt: skip
# Families that fail because of a bug in mpi_pymc itself (not the model file): family -> reason,
# run as strict xfails. The suite's first run found two, both fixed in compile.py (a dim's
# length passed as a traced argument: GaussianRandomWalk with coords; data placeholders
# without static shapes: a scan over pm.Data).
MPI_PYMC_BUGS: dict[str, str] = {}


def _reference(family: str) -> dict:
    path = REFERENCES / f"{family}.json"
    if not path.exists():
        pytest.fail(
            f"no reference for {family}: run `.venv/bin/python "
            f"tests/coverage_models/make_references.py --only {family}`"
        )
    return json.loads(path.read_text())


def _constant(sd: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Elements that do not vary (a correlation matrix's unit diagonal): rounding noise only."""
    return sd <= 1e-9 * np.maximum(1.0, np.abs(mean))


def _comparisons() -> int:
    """Mean and sd comparisons over the whole suite (non-constant elements of every reference)."""
    count = 0
    for path in REFERENCES.glob("*.json"):
        for element in json.loads(path.read_text())["elements"].values():
            sd, mean = np.array(element["sd"]), np.array(element["mean"])
            count += 2 * int((~_constant(sd, mean)).sum())
    return count


# Multiple comparisons: the suite checks 559 varying elements' means and sds (1118 comparisons;
# the 51 constant elements, such as imputed y's observed entries and a correlation matrix's
# diagonal, must match exactly instead). At SIGMAS (4.5, a two-sided p of 7e-6 each) a correct
# sampler would fail one of them in about 1 run of 400 -- more in practice, as the MCSEs are
# themselves estimates and an sd's error has heavier tails than a Gaussian's. Bonferroni: the
# bound that keeps the chance of any false alarm in the whole suite at FAMILY_ALPHA (the house
# rate of order 1e-4 per check, applied to the suite as one check): 5.35 standard errors for
# 1118 comparisons, recomputed from the reference files. Correlated elements (a Deterministic and
# its inputs) make it conservative. It never goes below SIGMAS.
FAMILY_ALPHA = 1e-4
Z_BOUND = max(SIGMAS, float(stats.norm.isf(FAMILY_ALPHA / 2 / max(_comparisons(), 1))))


def _group(tree, name: str):
    """One group as an xarray Dataset, from an ArviZ 0.x InferenceData or a 1.x DataTree."""
    group = tree[name]
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def _names(tree, name: str) -> list[str]:
    """Sorted variable names of a group; [] when the file has no such group."""
    try:
        return sorted(_group(tree, name).data_vars)
    except KeyError:
        return []


def _moments(draws: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, sd and their MCSEs of (chain, draw, p) draws; the sd's by the delta method on the
    squared deviations, as ArviZ's ``mcse(method="sd")``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = draws.mean(axis=(0, 1))
        sd = draws.std(axis=(0, 1), ddof=1)
        sq = (draws - mean) ** 2
        mcse_sd = sq.std(axis=(0, 1), ddof=1) / np.sqrt(diagnostics.ess_mean(sq)) / (2 * sd)
        return {"mean": mean, "sd": sd, "mcse_mean": diagnostics.mcse_mean(draws),
                "mcse_sd": mcse_sd}  # fmt: skip


def _cases():
    for family in FAMILIES:
        marks = []
        if MPI_PYMC_BUGS.get(family):
            marks.append(pytest.mark.xfail(strict=True, reason=MPI_PYMC_BUGS[family]))
        yield pytest.param(family, marks=marks, id=family)


@pytest.mark.parametrize("family", list(_cases()))
def test_model_matches_pm_sample(family, tmp_path):
    reference = _reference(family)
    out = tmp_path / f"{family}.h5"
    proc = run_ranks(
        2,
        ["run", str(MODELS / f"{family}.py"), "--chains", str(CHAINS), "--tune", str(TUNE),
         "--draws", str(DRAWS), "--seed", str(SEED), "--out", str(out)],
        cwd=tmp_path,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = az.from_netcdf(out)
        posterior = _group(tree, "posterior").load()
        sample_stats = _group(tree, "sample_stats").load()
        data_groups = {name: _names(tree, name) for name in reference["groups"]}
    if hasattr(tree, "close"):
        tree.close()

    # (a) the posterior's variables, their dims (after chain, draw) and coords are pm.sample's.
    expected = reference["posterior"]
    assert sorted(posterior.data_vars) == sorted(expected)
    for name, spec in expected.items():
        data = posterior[name]
        assert data.dims[:2] == ("chain", "draw"), (name, data.dims)
        assert list(data.dims[2:]) == spec["dims"], (name, data.dims)
        for dim, values in spec["coords"].items():
            assert posterior[dim].values.tolist() == values, (name, dim)
    assert dict(posterior.sizes)["chain"] == CHAINS and dict(posterior.sizes)["draw"] == DRAWS

    # ... and observed_data and constant_data hold pm.sample's variables (``y_observed`` for an
    # imputed ``y``, the pm.Data containers).
    assert data_groups == reference["groups"]

    # (b) the sample stats every NUTS run reports (pm.sample has them too).
    assert REQUIRED_STATS <= set(sample_stats.data_vars), sorted(sample_stats.data_vars)
    assert REQUIRED_STATS <= set(reference["sample_stats"])

    # (c) no transformed helper (``sigma_log__``, ``w_simplex__``) in the posterior.
    assert not [name for name in posterior.data_vars if name.endswith("__")]

    # (d) every scalar element's mean and sd within Z_BOUND combined MCSEs of pm.sample's.
    failures = []
    for name, spec in expected.items():
        draws = posterior[name].values.reshape(CHAINS, DRAWS, -1).astype(float)
        ours = _moments(draws)
        ref = {k: np.asarray(v, dtype=float) for k, v in reference["elements"][name].items()}
        constant = _constant(ref["sd"], ref["mean"])
        for i in np.flatnonzero(constant):
            if abs(ours["mean"][i] - ref["mean"][i]) > 1e-8 or ours["sd"][i] > 1e-8:
                failures.append(f"{name}[{i}] constant {ref['mean'][i]}: {ours['mean'][i]}")
        for stat, mcse in (("mean", "mcse_mean"), ("sd", "mcse_sd")):
            bound = Z_BOUND * np.hypot(ours[mcse], ref[mcse])
            off = np.abs(ours[stat] - ref[stat])
            bad = ~constant & ~(off <= bound)  # NaN (an MCSE that is not finite) fails too
            failures += [
                f"{name}[{np.unravel_index(i, spec['shape']) if spec['shape'] else ''}] {stat}: "
                f"ours {ours[stat][i]:.5g} ref {ref[stat][i]:.5g}, |diff| {off[i]:.3g} > "
                f"{Z_BOUND:.2f} x {np.hypot(ours[mcse][i], ref[mcse][i]):.3g}"
                for i in np.flatnonzero(bad)
            ]
    assert not failures, "\n".join(failures)
