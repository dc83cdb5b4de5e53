"""The output lock: pure staleness rules, the lock file itself, and real jobs that contend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import (
    EIGHT_SCHOOLS,
    error_lines,
    rank_pids,
    run_ranks,
    start_until_checkpoint,
    wait_ranks_gone,
)

from mpi_pymc.core.config import UserError
from mpi_pymc.output import lock as output_lock
from mpi_pymc.output.lock import Facts, Holder, stale_reason

# --- pure rules -------------------------------------------------------------------------------

HOLDER = Holder("node7", 4242, 1000, "88", started_at=0.0)


def _facts(**changes) -> Facts:
    return Facts(**{"now": 100.0, "heartbeat": 90.0, "same_host": False, **changes})


def test_a_live_holder_keeps_its_lock():
    assert stale_reason(HOLDER, _facts()) is None
    assert stale_reason(HOLDER, _facts(same_host=True, pid_started_now=1000)) is None
    assert stale_reason(HOLDER, _facts(slurm_job_known=True)) is None
    assert stale_reason(HOLDER, _facts(slurm_job_known=None)) is None  # no squeue: no verdict


def test_same_host_dead_or_reused_pid_is_stale():
    assert "no longer exists" in stale_reason(HOLDER, _facts(same_host=True, pid_exists=False))
    assert "another process" in stale_reason(HOLDER, _facts(same_host=True, pid_started_now=7))
    assert "this same process" in stale_reason(
        HOLDER, _facts(same_host=True, pid_started_now=1000, this_pid=4242)
    )


def test_ended_slurm_job_and_old_heartbeat_are_stale():
    assert "SLURM job 88 has ended" in stale_reason(HOLDER, _facts(slurm_job_known=False))
    old = _facts(now=1000.0, heartbeat=300.0, stale_after=600.0)
    assert "not refreshed for 700 s" in stale_reason(HOLDER, old)
    assert "not refreshed" in stale_reason(None, old)  # an unreadable lock: heartbeat only
    assert stale_reason(None, _facts()) is None


def test_lock_content_round_trips_and_names_its_holder():
    assert Holder.from_json(HOLDER.to_json()) == HOLDER
    assert "host node7, pid 4242, SLURM job 88, since" in HOLDER.describe()
    for garbled in ("", "{", json.dumps({"host": "x"})):
        with pytest.raises(ValueError):
            Holder.from_json(garbled)
    assert output_lock.stale_after_from({}) == 600
    assert output_lock.stale_after_from({"MPI_PYMC_LOCK_STALE_AFTER": "30"}) == 30
    with pytest.raises(UserError, match="must be a positive number"):
        output_lock.stale_after_from({"MPI_PYMC_LOCK_STALE_AFTER": "soon"})


def test_squeue_decides_only_when_it_answers(tmp_path, monkeypatch):
    fake = tmp_path / "squeue"  # argv: -h -j JOB -o %T
    fake.write_text(
        '#!/bin/sh\ncase "$3" in\n1) echo RUNNING;;\n'
        '2) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;;\n'
        "*) exit 1;;\nesac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert output_lock.slurm_job_known("1") is True
    assert output_lock.slurm_job_known("2") is False
    assert output_lock.slurm_job_known("3") is None  # controller down: no verdict


# --- the lock file ----------------------------------------------------------------------------


def test_held_refused_released_and_stale_taken_over(tmp_path):
    out = str(tmp_path / "o.h5")
    first = output_lock.acquire(out, 600)
    second = output_lock.acquire(out, 600)  # a lock this process left behind is stale
    assert "this same process" in second.broke
    first.release()  # never removes the lock that replaced its own
    assert Holder.from_json(Path(second.path).read_text()) == second.holder
    second.release()
    assert not os.path.exists(output_lock.lock_path(out))

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = Holder(output_lock.me().host, child.pid, output_lock.process_state(child.pid)[1],
                       None, time.time())  # fmt: skip
        Path(output_lock.lock_path(out)).write_text(alive.to_json())
        with pytest.raises(UserError, match=f"is in use by another job .*pid {child.pid}"):
            output_lock.acquire(out, 600)
    finally:
        child.kill()
        child.wait()
    lock = output_lock.acquire(out, 600)  # the holder is gone: stale
    assert f"process {child.pid} on" in lock.broke
    assert Holder.from_json(Path(output_lock.lock_path(out)).read_text()) == lock.holder
    lock.release()


def test_the_heartbeat_refreshes_the_lock(tmp_path):
    lock = output_lock.acquire(str(tmp_path / "o.h5"), stale_after=0.5)
    os.utime(lock.path, (0, 0))
    time.sleep(0.3)
    assert os.stat(lock.path).st_mtime > 0
    lock.release()


# --- real jobs --------------------------------------------------------------------------------

SETTINGS = ["--draws", "300", "--tune", "100", "--chains", "4", "--seed", "5",
            "--chunk-draws", "25", "--chain-method", "sequential"]  # fmt: skip


def _start(tmp: Path, out: Path) -> subprocess.Popen:
    """Job A on 2 ranks, returned once it has checkpointed some draws."""
    args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)]
    return start_until_checkpoint(2, args, tmp, out, after_draws=50)


def test_a_running_job_cannot_be_overwritten_or_resumed(tmp_path):
    out = tmp_path / "live.h5"
    job_a = _start(tmp_path, out)
    pids = rank_pids(out)
    for pid in pids:  # A sits mid-run, holding its lock, for as long as B needs
        os.kill(pid, signal.SIGSTOP)
    try:
        for ranks, flag in ((2, "--overwrite"), (None, "--resume")):
            args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out), flag]
            job_b = run_ranks(ranks, args, cwd=tmp_path, timeout=120)
            assert job_b.returncode == 2, job_b.stderr
            (line,) = error_lines(job_b.stderr)
            print(line)
            assert f"output '{out}' is in use by another job (host " in line
            assert f"pid {pids[0]}" in line or f"pid {pids[1]}" in line
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    stdout, stderr = job_a.communicate(timeout=180)
    assert job_a.returncode == 0, stderr
    wait_ranks_gone(out)
    with h5py.File(out) as f:  # A's draws, all of them
        assert (f.attrs["draws_completed"][()] == 300).all()
        assert np.isfinite(f["posterior"]["mu"][()]).all()
    assert not Path(output_lock.lock_path(out)).exists()


def test_a_lock_left_by_a_killed_job_does_not_block_resume(tmp_path):
    out = tmp_path / "killed.h5"
    job_a = _start(tmp_path, out)
    for pid in rank_pids(out):
        os.kill(pid, signal.SIGKILL)
    job_a.communicate(timeout=60)
    wait_ranks_gone(out)
    assert Path(output_lock.lock_path(out)).exists()
    args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out), "--resume"]
    proc = run_ranks(2, args, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "took over the stale lock" in proc.stdout and "no longer exists" in proc.stdout
    assert not Path(output_lock.lock_path(out)).exists()
