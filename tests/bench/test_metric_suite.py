"""benchmarks/metric_suite.py (issue 34's side-by-side suite): its settings, the summary's
arithmetic and markdown, the suite's model files, and the nutpie low-rank peer in a real tiny run.

The suite itself is not run here: it takes an hour on a quiet machine."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
from helpers import ROOT, env

from mpi_pymc.bench.launching import BASELINE_SCRIPT, BenchError


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


suite = _load(ROOT / "benchmarks" / "metric_suite.py", "metric_suite")


def _record(posterior, method, rate, ok=True):
    return {"posterior": posterior, "method": method, "ok": ok, "label": method, "log": "x.log",
            "min_ess_bulk_per_second": rate, "min_ess_bulk": 1000.0, "wall_seconds": 10.0,
            "max_r_hat": 1.002, "divergences": 0}  # fmt: skip


def test_settings_and_names():
    args = suite.parse([])
    assert (args.tune, args.draws, args.chains, args.ranks) == (1000, 1000, 4, 2)
    args = suite.parse(["--smoke"])
    assert (args.tune, args.draws) == (suite.SMOKE_TUNE, suite.SMOKE_DRAWS)
    assert suite._names(None, suite.METHODS, "methods") == list(suite.METHODS)
    assert suite._names("horseshoe, logistic,horseshoe", suite.POSTERIORS, "posteriors") == [
        "horseshoe",
        "logistic",
    ]
    with pytest.raises(BenchError, match="unknown --methods stan"):
        suite._names("stan", suite.METHODS, "methods")
    assert set(suite.PEERS) <= set(_load(BASELINE_SCRIPT, "baseline_pymc").METHODS)
    for posterior in suite.POSTERIORS.values():
        assert posterior.model.is_file(), posterior.model
        assert set(posterior.env) == set(posterior.smoke_env)  # smoke shrinks every size


def test_compare_takes_the_best_peer_and_summarises_the_suite():
    records = [
        _record("a", "mpi_pymc", 200.0),
        _record("a", "mpi_pymc_diag", 100.0),
        _record("a", "mpi_pymc_warm", 400.0),
        _record("a", "numpyro_parallel", 50.0),
        _record("a", "nutpie_jax", 100.0),
        _record("a", "nutpie_jax_low_rank", None, ok=False),
        _record("b", "mpi_pymc", 10.0),
        _record("b", "mpi_pymc_diag", 5.0),
        _record("b", "nutpie_jax_low_rank", 20.0),
        _record("c", "mpi_pymc", 30.0),  # no peer ran: no ratio
    ]
    out = suite.compare(records, ["a", "b", "c"])
    a, b, c = out["per_posterior"]
    assert (a["best_peer"], a["mpi_pymc_vs_best_peer"]) == ("nutpie_jax", 2.0)
    assert a["peers_failed"] == ["nutpie_jax_low_rank"] and a["default_vs_diag"] == 2.0
    assert (b["best_peer"], b["mpi_pymc_vs_best_peer"], b["mpi_pymc_diag_vs_best_peer"]) == (
        "nutpie_jax_low_rank",
        0.5,
        0.25,
    )
    assert c["best_peer"] is None and c["mpi_pymc_vs_best_peer"] is None
    default = out["suite"]["mpi_pymc"]
    assert math.isclose(default["geometric_mean_vs_best_peer"], 1.0)  # sqrt(2 x 0.5)
    assert (default["worst_vs_best_peer"], default["worst_posterior"]) == (0.5, "b")
    assert default["posteriors"] == 2 and default["missing"] == ["c"]
    diag = out["suite"]["mpi_pymc_diag"]
    assert math.isclose(diag["geometric_mean_vs_best_peer"], math.sqrt(0.25))
    warm = out["suite"]["mpi_pymc_warm"]  # only posterior a has a warm row
    assert a["mpi_pymc_warm_vs_best_peer"] == 4.0 and b["mpi_pymc_warm_vs_best_peer"] is None
    assert (warm["posteriors"], warm["missing"]) == (1, ["b", "c"])


def test_render_lists_every_row_and_the_worst_case_first():
    records = [
        _record("horseshoe", "mpi_pymc", 10.0),
        _record("horseshoe", "nutpie_jax", 20.0),
        _record("logistic", "mpi_pymc", 300.0),
        _record("logistic", "nutpie_jax", 100.0),
        {**_record("logistic", "nutpie_jax_low_rank", None, ok=False), "error": "timed out"},
    ]
    results = {
        "created_at": "2026-12-08T10:00:00+0000",
        "command_line": ["python", "benchmarks/metric_suite.py"],
        "settings": {"smoke": False, "chains": 4, "tune": 1000, "draws": 1000, "seed": 1,
                     "ranks": 2, "cores": 2, "posteriors": ["logistic", "horseshoe"]},
        "runs": records,
        "comparison": suite.compare(records, ["logistic", "horseshoe"]),
    }  # fmt: skip
    text = suite.render(results)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len([r for r in rows if "nutpie JAX" in r or "mpi_pymc, default" in r]) >= 5
    assert "failed: timed out" in text
    ratio_rows = [r for r in rows if "×" in r]
    assert ratio_rows[0].startswith("| horseshoe") and "0.50×" in ratio_rows[0]
    assert "geometric mean **1.22×**" in text and "worst **0.50×** (horseshoe)" in text
    assert "logistic: no figure from nutpie_jax_low_rank" in text


def test_the_suite_models_build_with_their_smoke_sizes():
    for name in ("collinear_logistic", "glmm_lkj", "horseshoe"):
        posterior = suite.POSTERIORS[name]
        code = (
            f"import runpy; m = runpy.run_path({str(posterior.model)!r})['build_model'](); "
            "import json; print(json.dumps([v.name for v in m.free_RVs]))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env={**env(), **posterior.smoke_env},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        free = json.loads(proc.stdout.strip().splitlines()[-1])
        assert free, name


def test_nutpie_low_rank_baseline_runs(tmp_path):
    pytest.importorskip("nutpie")
    cmd = [sys.executable, str(BASELINE_SCRIPT), str(ROOT / "examples" / "logistic_regression.py"),
           "--method", "nutpie_jax_low_rank", "--chains", "2", "--tune", "50", "--draws", "30",
           "--cores", "1"]  # fmt: skip
    proc = subprocess.run(
        cmd,
        env={**os.environ, "MPI_PYMC_N": "300", "MPI_PYMC_D": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and record["ok"], proc.stderr[-2000:]
    assert record["nuts_sampler_kwargs"] == {"cores": 1, "backend": "jax",
                                             "gradient_backend": "jax",
                                             "low_rank_modified_mass_matrix": True}  # fmt: skip
    assert (record["chains_recorded"], record["draws_recorded"]) == (2, 30)
    assert record["posterior_dtypes"] == ["float64"]
