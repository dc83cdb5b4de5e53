"""Progress of a run on rank 0, from the first second: the start-up phases by name with the run's
elapsed time, then a text bar on a terminal; or records for a launching process.

``MPI_PYMC_PROGRESS=records`` (set by :mod:`mpi_pymc.api` when it launches the ranks itself)
makes rank 0 print one machine-readable line per phase and per chunk on stdout instead of
drawing, so the launching process (a notebook, a script) can draw its own bar.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

RECORD_PREFIX = "mpi_pymc-progress "
RECORDS_ENV = "MPI_PYMC_PROGRESS"
# The phases a run goes through before its bar moves, in order (the driver's run.py names them;
# warming up and sampling are also the bar's own labels).
STARTING, LOADING, COMPILING, WARMING_UP, SAMPLING = (
    "starting ranks",
    "loading the model",
    "compiling",
    "warming up",
    "sampling",
)
_LABEL_WIDTH = len(LOADING)
# How often the elapsed time of a start-up phase is redrawn on a terminal.
_TICK_SECONDS = 1.0


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
    """Rank 0's progress: one line on stderr (only on a terminal unless forced), or records on
    stdout when a launching process asked for them (``records``; default: the environment)."""

    def __init__(
        self, enabled: bool, total: int, records: bool | None = None, start: float | None = None
    ):
        self.records = os.environ.get(RECORDS_ENV) == "records" if records is None else records
        self.enabled = enabled or self.records
        self.total = max(total, 1)
        self.start = time.perf_counter() if start is None else start  # the run's clock
        self.steps_start: float | None = None  # the rate's clock
        self.last_len = 0
        self.phase_name: str | None = None  # a start-up phase being shown (no bar yet)
        self.lock = threading.Lock()
        self.ticker: threading.Thread | None = None

    def phase(self, name: str) -> None:
        """A start-up phase begins: shown by name with the run's elapsed time (redrawn every
        second on a terminal, so a slow compile is told from a hang)."""
        if not self.enabled:
            return
        self.steps_start = time.perf_counter()  # the bar's rate counts from the last phase on
        if self.records:
            self._record({"phase": name, "elapsed": round(self._elapsed(), 1), "done": 0})
            return
        with self.lock:
            self.phase_name = name
            self._draw_phase()
        if self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()

    def say(self, echo, line: str) -> None:
        """``echo(line)`` without leaving it on the progress line; the progress is redrawn."""
        if not self.enabled or self.records:
            echo(line)
            return
        with self.lock:
            if self.last_len:
                self._write("")
            echo(line)
            sys.stdout.flush()
            if self.phase_name is not None:
                self._draw_phase()

    def update(self, label: str, done: int, divergences: int) -> None:
        if not self.enabled:
            return
        if self.steps_start is None:
            self.steps_start = time.perf_counter()
        if self.records:
            self._record({"phase": label.strip(), "done": done, "divergences": divergences})
            return
        elapsed = time.perf_counter() - self.steps_start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * done / self.total)
        line = (
            f"{label:<{_LABEL_WIDTH}} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{rate:,.0f} it/s  ETA {eta:5.0f}s  divergences {divergences}"
        )
        with self.lock:
            self.phase_name = None  # the bar replaces the phase line; the ticker stops
            self._write(line)

    def close(self) -> None:
        with self.lock:
            self.phase_name = None
            if self.enabled and not self.records and self.last_len:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self.last_len = 0

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _draw_phase(self) -> None:
        self._write(f"{self.phase_name:<{_LABEL_WIDTH}} {self._elapsed():6.1f}s")

    def _write(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(self.last_len) + ("\r" if not line else ""))
        sys.stderr.flush()
        self.last_len = len(line)

    def _tick(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            with self.lock:
                if self.phase_name is None:
                    self.ticker = None
                    return
                self._draw_phase()

    def _record(self, record: dict) -> None:
        record.update(total=self.total)
        sys.stdout.write(RECORD_PREFIX + json.dumps(record) + "\n")
        sys.stdout.flush()
