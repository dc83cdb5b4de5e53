"""The test launchers retry only a launcher that never started, nothing else."""

import sys

import pytest
from helpers import LAUNCHER_DID_NOT_START, launch, start_until_draws

SCRIPT = """
import sys
from pathlib import Path
tries = Path(sys.argv[1])
tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
print(sys.argv[2], file=sys.stderr)
sys.exit(213)
"""


def _tries(tmp_path, stderr: str) -> tuple[int, int]:
    count = tmp_path / "tries"
    proc = launch([sys.executable, "-c", SCRIPT, str(count), stderr], timeout=60)
    return proc.returncode, len(count.read_text())


def test_a_launcher_that_did_not_start_is_started_again(tmp_path):
    assert _tries(tmp_path, LAUNCHER_DID_NOT_START[0]) == (213, 3)


def test_a_failure_of_the_program_is_returned_at_once(tmp_path):
    assert _tries(tmp_path, "mpi_pymc: error: something real") == (213, 1)


STARTS = """
import json, sys, time
from pathlib import Path
import numpy as np
tries, out, fails = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
if len(tries.read_text()) <= fails:
    print(sys.argv[4], file=sys.stderr)
    sys.exit(213)
with open(out + ".tmp", "wb") as f:  # written whole, then renamed, as a checkpoint is
    np.savez(f, meta=json.dumps({"draws_done": 10}))
Path(out + ".tmp").replace(out + ".ckpt")
time.sleep(60)
"""


def _started(tmp_path, fails: int, stderr: str) -> int:
    """Tries of a run that fails ``fails`` times with ``stderr``, then checkpoints 10 draws."""
    tmp_path.mkdir()
    count, out = tmp_path / "tries", tmp_path / "run.h5"
    cmd = [sys.executable, "-c", STARTS, str(count), str(out), str(fails), stderr]
    proc = start_until_draws(cmd, tmp_path, out, 10, timeout=60)
    proc.kill()
    proc.communicate()
    return len(count.read_text())


def test_start_until_draws_retries_the_launcher_only(tmp_path):
    assert _started(tmp_path / "a", 2, LAUNCHER_DID_NOT_START[0]) == 3
    with pytest.raises(pytest.fail.Exception, match="something real"):
        _started(tmp_path / "b", 1, "mpi_pymc: error: something real")
    assert len((tmp_path / "b" / "tries").read_text()) == 1
