"""SLURM as a running job sees it: the job's end time and ``squeue``'s answers (None wherever
SLURM is absent or silent, so every caller has a no-SLURM path)."""

from __future__ import annotations

import os
import subprocess
import time


def slurm_end_time(environ=None) -> float | None:
    """The running SLURM job's end time (Unix seconds), or None outside a job or unlimited.

    ``SLURM_JOB_END_TIME`` where SLURM sets it (newer releases); otherwise ``squeue`` is asked
    once (``%e``, local time).
    """
    environ = os.environ if environ is None else environ
    value = environ.get("SLURM_JOB_END_TIME", "")
    if value.isdigit():
        return float(value)
    job = environ.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        return None
    answer = squeue(job, "%e")
    if answer is None:
        return None
    try:  # Unknown / N/A / no squeue: only --max-time and signals apply
        return time.mktime(time.strptime(answer.stdout.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def squeue(job: str, field: str) -> subprocess.CompletedProcess | None:
    """``squeue -h -j JOB -o FIELD`` (None: no squeue, or it hung)."""
    try:
        return subprocess.run(
            ["squeue", "-h", "-j", job, "-o", field],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
