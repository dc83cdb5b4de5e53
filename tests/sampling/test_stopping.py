"""Stopping rules: --until-ess (checked against ArviZ on the file), --max-time with resume,
and the pure decisions behind them."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import EIGHT_SCHOOLS, run_ranks
from tolerances import arviz_reference, az

from mpi_pymc.core.config import UserError, parse_duration
from mpi_pymc.core.errors import EXIT_CHECKPOINTED
from mpi_pymc.output.checkpoint import checkpoint_path
from mpi_pymc.sampling import stopping

GOAL = 300
CHUNK = 50
SETTINGS = ["--tune", "300", "--draws", "1000", "--chains", "4", "--seed", "11",
            "--chunk-draws", str(CHUNK), "--until-ess", str(GOAL)]  # fmt: skip


# --- pure parts -------------------------------------------------------------------------------


def _stats(bulk, tail, rhat):
    return {"ess_bulk": np.array(bulk), "ess_tail": np.array(tail), "r_hat": np.array(rhat)}


def test_goal_needs_every_parameter_on_every_measure():
    assert stopping.goal_met(_stats([500, 400], [400, 450], [1.0, 1.009]), 400, 1.01)
    assert not stopping.goal_met(_stats([500, 399], [400, 450], [1.0, 1.0]), 400, 1.01)
    assert not stopping.goal_met(_stats([500, 400], [399, 450], [1.0, 1.0]), 400, 1.01)
    assert not stopping.goal_met(_stats([500, 400], [400, 450], [1.0, 1.02]), 400, 1.01)
    assert not stopping.goal_met(_stats([500, np.nan], [400, 450], [1.0, 1.0]), 400, 1.01)
    # A tail goal of its own: lower, or none at all (a NaN tail ESS then does not matter).
    assert stopping.goal_met(_stats([500, 400], [99, 450], [1.0, 1.0]), 400, 1.01, tail_goal=0)
    assert stopping.goal_met(_stats([500, 400], [100, np.nan], [1.0, 1.0]), 400, 1.01, 0)
    assert stopping.goal_met(_stats([500, 400], [100, 450], [1.0, 1.0]), 400, 1.01, 100)
    assert not stopping.goal_met(_stats([500, 400], [99, 450], [1.0, 1.0]), 400, 1.01, 100)
    assert not stopping.goal_met(_stats([500, 400], [500, 450], [1.0, 1.0]), 400, 1.01, 451)
    assert not stopping.goal_met(_stats([500, 400], [99, 450], [1.0, 1.02]), 400, 1.01, 0)


def test_checks_wait_until_the_goal_is_reachable():
    assert not stopping.goal_reachable(3, 1)  # too few draws for any ESS
    assert not stopping.goal_reachable(100, 201)  # ESS <= 100 * log10(100) = 200
    assert stopping.goal_reachable(100, 200)


def test_chunks_end_where_the_last_checks_ess_per_draw_reaches_the_goal():
    def chunk(draw, stats, tail_goal=None, remaining=1000):
        return stopping.next_chunk(draw, 100, remaining, stats, 400, 1.01, tail_goal)

    margin = stopping.PROJECTION_MARGIN
    # 350 bulk ESS at 300 draws: 400 at about 343 draws, and the margin.
    expected = math.ceil(300 * 400 / 350 * margin) - 300
    assert chunk(300, _stats([350, 500], [450, 450], [1.0, 1.0])) == expected < 100
    # The tail decides when it is further from its goal; with no tail goal only bulk counts.
    assert chunk(300, _stats([380, 500], [200, 450], [1.0, 1.0])) == 100  # 600 is past a chunk
    assert (
        chunk(300, _stats([380, 500], [350, 450], [1.0, 1.0]))
        == math.ceil(300 * 400 / 350 * margin) - 300
    )
    assert (
        chunk(300, _stats([380, 500], [200, 450], [1.0, 1.0]), tail_goal=0)
        == math.ceil(300 * 400 / 380 * margin) - 300
    )
    # Never shorter than MIN_GOAL_CHUNK, never past the cap or a whole chunk.
    assert chunk(300, _stats([399.9, 500], [450, 450], [1.0, 1.0])) == stopping.MIN_GOAL_CHUNK
    assert chunk(300, _stats([350, 500], [450, 450], [1.0, 1.0]), remaining=5) == 5
    assert chunk(100, _stats([50, 500], [450, 450], [1.0, 1.0])) == 100
    # R-hat still too high, a NaN, or no check yet: a whole chunk.
    assert chunk(300, _stats([300, 500], [450, 450], [1.0, 1.02])) == 100
    assert chunk(300, _stats([300, np.nan], [450, 450], [1.0, 1.0])) == 100
    assert chunk(300, None) == 100


def test_durations_in_slurm_forms():
    assert parse_duration("90") == 90
    assert parse_duration("2:30") == 150
    assert parse_duration("01:00:00") == 3600
    assert parse_duration("1-02:00:00") == 93600
    assert parse_duration("2-12") == 2 * 86400 + 12 * 3600
    for bad in ("", "soon", "1:2:3:4", "-5", "1:-1"):
        with pytest.raises(UserError, match="is not a duration"):
            parse_duration(bad)


def test_deadline_leaves_room_for_the_slowest_chunk():
    deadline = stopping.Deadline.start(launched=1000.0, max_time=100.0, job_end=None)
    assert deadline.reason_to_stop(1090.0) is None  # no chunk measured yet
    deadline.record(4.0)
    deadline.record(8.0)
    assert deadline.reason_to_stop(1089.0) is None  # 1089 + 1.25 * 8 = 1099
    assert deadline.reason_to_stop(1091.0) == stopping.STOP_MAX_TIME
    job = stopping.Deadline.start(launched=0.0, max_time=None, job_end=500.0)
    job.record(10.0)
    assert job.reason_to_stop(500.0 - stopping.SLURM_MARGIN - 13.0) is None
    assert job.reason_to_stop(500.0 - stopping.SLURM_MARGIN - 12.0) == stopping.STOP_JOB_END


# --- real runs ---------------------------------------------------------------------------------


def _arviz_goal(posterior, draws: int, tail_goal: int = GOAL) -> bool:
    """The goal judged by ArviZ itself on the first ``draws`` draws of every variable."""
    part = posterior.isel(draw=slice(0, draws))
    columns = [
        np.asarray(part[name].values, dtype=float).reshape(*part[name].shape[:2], -1)
        for name in part.data_vars
    ]
    reference = arviz_reference(np.concatenate(columns, axis=2))
    return bool(
        reference["ess_bulk"].min() >= GOAL
        and reference["ess_tail"].min() >= tail_goal
        and reference["r_hat"].max() <= 1.01
    )


@pytest.fixture(scope="module")
def goal_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("goal")
    out = tmp / "goal.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _checks(out) -> list[int]:
    with h5py.File(out) as f:
        return [int(draw) for draw in f.attrs["until_ess_checks"]]


def test_until_ess_stops_at_the_first_check_meeting_the_goal(goal_run):
    out, proc = goal_run
    posterior = az.from_netcdf(out).posterior
    taken = posterior.sizes["draw"]
    assert CHUNK <= taken < 1000, taken
    # Exactly the draws taken: no unfilled (NaN) tail.
    assert not any(np.isnan(posterior[name].values).any() for name in posterior.data_vars)
    # Checked after every chunk once the goal was reachable; ArviZ finds the goal met at the
    # last check and at no earlier one; the last chunks were shortened towards the goal.
    checks = _checks(out)
    assert checks[-1] == taken and checks == sorted(checks), checks
    steps = np.diff(checks)
    assert ((steps >= stopping.MIN_GOAL_CHUNK) & (steps <= CHUNK)).all(), checks
    assert stopping.goal_reachable(4 * checks[0], GOAL)
    assert checks[0] == CHUNK or not stopping.goal_reachable(4 * (checks[0] - CHUNK), GOAL)
    assert _arviz_goal(posterior, taken)
    assert not any(_arviz_goal(posterior, draw) for draw in checks[:-1])
    with h5py.File(out) as f:
        assert f.attrs["stopped_by"] == stopping.STOP_GOAL
        np.testing.assert_array_equal(f.attrs["draws_completed"], [taken] * 4)
        assert json.loads(f.attrs["stopping"])["until_ess"] == GOAL
        # The file's own summary is of the draws taken.
        assert min(json.loads(f.attrs["diagnostics"])["ess_bulk"]) >= GOAL
    assert f"reached --until-ess {GOAL}" in proc.stdout
    assert not Path(checkpoint_path(out)).exists()


def test_until_tail_ess_0_stops_on_bulk_ess_and_r_hat_alone(goal_run, tmp_path):
    reference, _ = goal_run
    out = tmp_path / "bulk.h5"
    args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--until-tail-ess", "0", "--out", str(out)]
    proc = run_ranks(2, args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    posterior = az.from_netcdf(out).posterior
    taken = posterior.sizes["draw"]
    assert _arviz_goal(posterior, taken, tail_goal=0)
    checks = _checks(out)
    assert checks[-1] == taken
    assert not any(_arviz_goal(posterior, draw, tail_goal=0) for draw in checks[:-1])
    # The same seed draws the same chains: the bulk-only goal stops no later than both.
    both = az.from_netcdf(reference).posterior
    assert taken <= both.sizes["draw"]
    np.testing.assert_array_equal(posterior["mu"].values, both["mu"].values[:, :taken])
    with h5py.File(out) as f:
        assert json.loads(f.attrs["stopping"])["until_tail_ess"] == 0
    assert f"reached --until-ess {GOAL} (no tail ESS, R-hat <= 1.01)" in proc.stdout


def test_max_time_checkpoints_and_resume_reaches_the_same_goal(goal_run, tmp_path):
    reference, _ = goal_run
    out = tmp_path / "timed.h5"
    args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)]
    # Start-up alone takes longer than a second: the run stops after its first chunk.
    started = time.monotonic()
    first = run_ranks(2, [*args, "--max-time", "1"], cwd=tmp_path)
    assert first.returncode == EXIT_CHECKPOINTED, first.stderr
    assert "stopped by --max-time" in first.stdout
    assert time.monotonic() - started < 120
    assert Path(checkpoint_path(out)).exists()
    with h5py.File(out) as f:
        assert f.attrs["stopped_by"] == stopping.STOP_MAX_TIME
    # Resume (any rank count) continues towards the same goal and lands on the same draws.
    second = run_ranks(4, [*args, "--resume"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    resumed, whole = az.from_netcdf(out).posterior, az.from_netcdf(reference).posterior
    assert resumed.sizes == whole.sizes
    for name in whole.data_vars:
        np.testing.assert_array_equal(resumed[name].values, whole[name].values, name)
