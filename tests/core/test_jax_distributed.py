"""``core.jax_distributed`` under real ``mpirun -n 2``: the ranks become one JAX job of two
processes, and a start that JAX refuses (a backend already in use) ends in one line and exit 2
on every rank, not a hang. (The psum across them: tests/model/test_data_parallel.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import env, error_lines, launch, mpirun_or_skip


def _worker(mode: str) -> int:
    from mpi4py import MPI

    from mpi_pymc.core.errors import exit_code_of
    from mpi_pymc.core.jax_distributed import start_jax_distributed

    comm = MPI.COMM_WORLD

    def work() -> int:
        import jax

        if mode == "late":
            jax.devices()  # the backend starts: too late for jax.distributed
        start_jax_distributed(comm)
        print(f"rank {comm.Get_rank()}: {jax.process_count()} processes", flush=True)
        return 0

    return exit_code_of(comm, work)


def _mpirun(mode: str) -> subprocess.CompletedProcess:
    cmd = [mpirun_or_skip(), "-n", "2", sys.executable, __file__, mode]
    environment = {**env(), "JAX_PLATFORMS": "cpu"}
    environment["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent.parent)  # helpers
    return launch(cmd, 240, env=environment)


def test_two_ranks_become_one_jax_job():
    proc = _mpirun("start")
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert said == ["rank 0: 2 processes", "rank 1: 2 processes"], proc.stdout


def test_a_refused_start_is_one_line_and_exit_2():
    proc = _mpirun("late")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "starting JAX's distributed runtime" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
