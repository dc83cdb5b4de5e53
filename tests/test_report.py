"""``python -m mpi_pymc summary OUT.h5``: the run's own table, also for partial files."""

from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest
from helpers import EIGHT_SCHOOLS, error_lines, run_ranks

from mpi_pymc.diagnostics import maths as diagnostics
from mpi_pymc.report import read_posterior_matrix


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "es.h5"
    args = ["run", str(EIGHT_SCHOOLS), "--draws", "60", "--tune", "60", "--chains", "3",
            "--seed", "9", "--out", str(out)]  # fmt: skip
    proc = run_ranks(3, args, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_summary_reproduces_the_runs_distributed_diagnostics(finished):
    out, run_stdout = finished
    draws, labels, completed = read_posterior_matrix(str(out))
    assert draws.shape == (3, 60, len(labels))
    with h5py.File(out) as f:
        stored = json.loads(f.attrs["diagnostics"])
    ours = diagnostics.all_diagnostics(draws)
    by_label = dict(zip(labels, range(len(labels)), strict=True))
    for i, name in enumerate(stored["parameters"]):
        j = by_label[name]
        for key in ("r_hat", "ess_bulk", "ess_tail", "mean"):
            np.testing.assert_allclose(ours[key][j], stored[key][i], rtol=1e-10, err_msg=key)
    proc = run_ranks(None, ["summary", str(out)], cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    assert "theta[St. Paul's]" in proc.stdout and "ess_tail" in proc.stdout
    assert "3 chains x 60 draws" in proc.stdout


def test_summary_of_a_partial_file_uses_completed_draws_only(finished, tmp_path):
    out, _ = finished
    partial = tmp_path / out.name  # shards are found by name, next to the main file
    shutil.copy(out, partial)
    if os.path.isdir(str(out) + ".parts"):  # a complete shards run is one file: packed
        shutil.copytree(str(out) + ".parts", str(partial) + ".parts")
    with h5py.File(partial, "r+") as f:
        f.attrs["draws_completed"] = np.array([60, 25, 40])
        diverging = f["sample_stats/diverging"]
        marked = diverging[()]
        marked[0, :3] = marked[2, 50] = True  # three among the draws used, one after them
        diverging[...] = marked
    expected = int(marked[:, :25].sum())
    draws, _, completed = read_posterior_matrix(str(partial))
    assert draws.shape[:2] == (3, 25)
    assert np.isfinite(draws).all()
    proc = run_ranks(None, ["summary", str(partial)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "min 25, max 60; uneven" in proc.stdout
    warned = [line for line in proc.stdout.splitlines() if "divergent" in line]
    assert len(warned) == 1, proc.stdout
    assert warned[0].startswith(f"warning: {expected} divergent transition(s) after warmup (")
    assert f"of {3 * 25} draws)" in warned[0]


def test_summary_of_a_missing_or_foreign_file(tmp_path):
    (tmp_path / "plain.h5").write_bytes(b"not hdf5")
    for name, needle in (("none.h5", "does not exist"), ("plain.h5", "not a readable HDF5")):
        proc = run_ranks(None, ["summary", name], cwd=tmp_path, timeout=60)
        assert proc.returncode == 2
        assert needle in error_lines(proc.stderr)[0]
