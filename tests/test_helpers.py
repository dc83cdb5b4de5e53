"""The test launcher retries only a launcher that never started, nothing else."""

import sys

from helpers import LAUNCHER_DID_NOT_START, launch

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
