"""Progress of a run on rank 0: a text bar on a terminal, or records for a launching process.

``MPI_PYMC_PROGRESS=records`` (set by :mod:`mpi_pymc.api` when it launches the ranks itself)
makes rank 0 print one machine-readable line per chunk on stdout instead of drawing a bar, so
the launching process (a notebook, a script) can draw its own.
"""

from __future__ import annotations

import json
import os
import sys
import time

RECORD_PREFIX = "mpi_pymc-progress "
RECORDS_ENV = "MPI_PYMC_PROGRESS"


def progress_record(line: str) -> dict | None:
    """The progress record in one line of a rank's output, or None for any other line."""
    if not line.startswith(RECORD_PREFIX):
        return None
    try:
        record = json.loads(line[len(RECORD_PREFIX) :])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Progress:
    """Rank 0's progress: a one-line bar on stderr (only on a terminal unless forced), or
    records on stdout when a launching process asked for them."""

    def __init__(self, enabled: bool, total: int, records: bool | None = None):
        self.records = os.environ.get(RECORDS_ENV) == "records" if records is None else records
        self.enabled = enabled or self.records
        self.total = max(total, 1)
        self.start = time.perf_counter()
        self.last_len = 0

    def update(self, label: str, done: int, divergences: int) -> None:
        if not self.enabled:
            return
        if self.records:
            record = {
                "phase": label.strip(),
                "done": done,
                "total": self.total,
                "divergences": divergences,
            }
            sys.stdout.write(RECORD_PREFIX + json.dumps(record) + "\n")
            sys.stdout.flush()
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * done / self.total)
        line = (
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{rate:,.0f} it/s  ETA {eta:5.0f}s  divergences {divergences}"
        )
        sys.stderr.write(line.ljust(self.last_len))
        sys.stderr.flush()
        self.last_len = len(line)

    def close(self) -> None:
        if self.enabled and not self.records:
            sys.stderr.write("\n")
            sys.stderr.flush()
