"""mpi_pymc.diagnostics.collective under real ``mpirun`` runs of
tests/mpi_scripts/diagnostics_check.py."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_ranks

from mpi_pymc.diagnostics.maths import STAT_KEYS

TIMEOUT_S = 120
RTOL = 1e-8


def run_check(nranks: int, argv: list[str]) -> subprocess.CompletedProcess:
    """``mpirun -n N python -m mpi_scripts.diagnostics_check ARGV`` from tests/ (skips without
    an mpirun, fails after TIMEOUT_S)."""
    return run_ranks(
        nranks, argv, cwd=ROOT / "tests", timeout=TIMEOUT_S, module="mpi_scripts.diagnostics_check"
    )


@pytest.mark.parametrize(
    ("nranks", "chains", "draws", "params", "chain_counts"),
    [
        (1, 4, 101, 7, None),
        (2, 5, 100, 7, "3,2"),
        (3, 7, 101, 7, "3,2,2"),
        (4, 7, 51, 3, "1,2,1,3"),  # fewer parameters than ranks: rank 3 computes nothing
        (4, 8, 200, 9, None),
    ],
)
def test_distributed_matches_pure_and_arviz(
    tmp_path: Path, nranks: int, chains: int, draws: int, params: int, chain_counts: str | None
) -> None:
    out = tmp_path / "report.json"
    argv = ["--chains", str(chains), "--draws", str(draws), "--params", str(params)]
    argv += ["--out", str(out)] + (["--chain-counts", chain_counts] if chain_counts else [])
    run = run_check(nranks, argv)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["size"] == nranks
    assert report["keys"] == sorted(STAT_KEYS)
    assert report["identical_on_all_ranks"]
    for key, difference in report["max_rel_diff_pure"].items():
        assert difference < RTOL, f"{key} differs from the pure functions by {difference}"
    for key, difference in report["max_rel_diff_arviz"].items():
        assert difference < RTOL, f"{key} differs from ArviZ by {difference}"

    # Parameters: 0 random walk, 1 constant, 2 two modes by chain parity, 3 discrete, then iid.
    results = {key: np.array(value, dtype=float) for key, value in report["results"].items()}
    assert results["r_hat"][0] > 1.01
    assert np.isnan(results["r_hat"][1]) and results["ess_bulk"][1] == 2 * chains * (draws // 2)
    assert results["r_hat"][2] > 1.5
    nested = results["r_hat_nested"]
    assert np.isnan(nested).all() if nranks == 1 else np.isfinite(np.delete(nested, 1)).all()

    # Communication: an exact transpose (every value arrives once), no rank receiving more than
    # its ceil(params / size) parameters of every chain, plus O(params) results.
    records = report["records"]
    bound = math.ceil(params / nranks) * chains * draws
    assert report["transpose_bound"] == bound
    assert sum(record["transpose_values"] for record in records) == chains * draws * params
    for record in records:
        assert record["transpose_values"] <= bound
        assert record["gather_values"] <= len(STAT_KEYS) * params
        slice_params = record["param_stop"] - record["param_start"]
        assert record["transpose_values"] == slice_params * chains * draws


def test_mismatched_draws_fail_on_every_rank_without_hanging(tmp_path: Path) -> None:
    argv = ["--chains", "4", "--draws", "101", "--params", "3", "--bad-draws"]
    run = run_check(2, [*argv, "--out", str(tmp_path / "never.json")])
    assert run.returncode != 0
    message = "distributed_diagnostics: rank 1 has draws=100 but rank 0 has draws=101"
    assert f"r0 | {message}" in run.stderr or f"r1 | {message}" in run.stderr, run.stderr[-4000:]
    assert not (tmp_path / "never.json").exists()
