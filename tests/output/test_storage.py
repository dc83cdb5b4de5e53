"""Both writers (mpio, shards) on 1, 2 and 4 ranks: same draws, same layout, kill-safe, bounded.

The mpio cases need an MPI-enabled h5py (``make parallel-hdf5``); they are skipped elsewhere.
CI runs this file in both environments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import arviz as az
import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import (
    EIGHT_SCHOOLS,
    mpirun_or_skip,
    rank_pids,
    run_ranks,
    start_until_draws,
    wait_ranks_gone,
)

MPIO = bool(h5py.get_config().mpi)
needs_mpio = pytest.mark.skipif(not MPIO, reason="h5py is not MPI-enabled (make parallel-hdf5)")
WRITERS = [pytest.param("mpio", marks=[needs_mpio, pytest.mark.mpio]), "shards"]
SETTINGS = ["--draws", "40", "--tune", "30", "--chains", "5", "--seed", "3", "--chunk-draws",
            "16", "--chain-method", "sequential"]  # fmt: skip


def _run(tmp: Path, io: str, ranks: int, *extra: str) -> Path:
    out = tmp / f"{io}{ranks}.h5"
    proc = run_ranks(
        ranks, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--io", io, "--out", str(out), *extra],
        cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def _all_values(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {
            f"{g}/{name}": f[g][name][()]
            for g in ("posterior", "sample_stats")
            for name in f[g]
            if not f[g][name].is_scale
        }


@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("io", WRITERS)
def test_writer_layout_and_identity_with_the_shards_writer(tmp_path, io, ranks):
    out = _run(tmp_path, io, ranks)
    idata = az.from_netcdf(out)
    assert dict(idata.posterior.sizes) == {"chain": 5, "draw": 40, "school": 8}
    assert idata.posterior.school.values[6] == "St. Paul's"
    tree = xr.open_datatree(out, engine="h5netcdf")
    assert tree["sample_stats"]["diverging"].dims == ("chain", "draw")
    with h5py.File(out) as f:
        assert f.attrs["io"] == io
        np.testing.assert_array_equal(f.attrs["draws_completed"], [40] * 5)
        assert len(json.loads(f.attrs["peak_rss_mb"])) == ranks
        if io == "mpio":  # chunks one chain wide: no two ranks ever write the same chunk
            assert f["posterior"]["theta"].chunks[0] == 1
        else:  # a complete run is packed into one file (output/packing.py)
            assert not f["posterior"]["theta"].is_virtual
    assert not os.path.exists(str(out) + ".parts")
    if io == "mpio" or ranks > 1:
        baseline_dir = tmp_path / "baseline"
        baseline_dir.mkdir()
        reference = _all_values(_run(baseline_dir, "shards", 1))
        for key, values in _all_values(out).items():
            np.testing.assert_array_equal(values, reference[key], err_msg=key)


@pytest.mark.parametrize("io", WRITERS)
def test_sigkill_leaves_a_file_holding_exactly_the_claimed_draws(tmp_path, io):
    out = tmp_path / "killed.h5"
    settings = [a if a != "40" else "3000" for a in SETTINGS]
    cmd = [mpirun_or_skip(), "-n", "2", sys.executable, "-m", "mpi_pymc", "run",
           str(EIGHT_SCHOOLS), *settings, "--io", io, "--out", str(out)]  # fmt: skip
    proc = start_until_draws(cmd, tmp_path, out, 160, timeout=180)
    victim = rank_pids(out)[-1]
    os.kill(victim, signal.SIGKILL)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("surviving ranks hung after one was killed")
    assert proc.returncode != 0
    wait_ranks_gone(out)
    idata = az.from_netcdf(out)
    with h5py.File(out) as f:
        claimed = f.attrs["draws_completed"][()]
    # After each chunk the checkpoint is saved before the file marks the chunk complete, so a
    # kill between the two leaves the file one chunk (16 draws) behind the checkpoint we polled;
    # the draws it claims are all there, and --resume continues from the checkpoint.
    assert claimed.min() >= 160 - 16
    for chain, n in enumerate(claimed):
        assert np.isfinite(idata.posterior.mu.values[chain, :n]).all()
        assert np.isfinite(idata.sample_stats.lp.values[chain, :n]).all()


@pytest.mark.parametrize("io", WRITERS)
def test_peak_memory_does_not_grow_with_draws(tmp_path, io):
    peaks = {}
    for draws in (200, 2000):
        out = tmp_path / f"rss{draws}.h5"
        settings = [a if a != "40" else str(draws) for a in SETTINGS]
        settings = [a if a != "16" else "50" for a in settings]
        proc = run_ranks(
            2, ["run", str(EIGHT_SCHOOLS), *settings, "--io", io, "--out", str(out)], cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            peaks[draws] = max(json.loads(f.attrs["peak_rss_mb"]))
    assert peaks[2000] <= 1.2 * peaks[200], peaks
