"""SIGTERM/SIGUSR1 (and Ctrl-C from the Python API): a request to stop after the chunk, agreed by
every rank."""

from __future__ import annotations

import threading
import time
from typing import Any

from mpi_pymc.sampling.stopping import (
    STOP_JOB_END,
    STOP_MAX_TIME,
    STOP_SIGNAL,
    Deadline,
)

# Stop reasons agreed by an MPI MAX, in order of precedence (0: keep going).
AGREED_STOPS = (None, STOP_MAX_TIME, STOP_JOB_END, STOP_SIGNAL)


class StopRequest:
    """SIGTERM/SIGUSR1 (SLURM's walltime warning) ask every rank to stop after this chunk.

    From the Python API (``interrupt=True``) SIGINT does too, and a second SIGINT raises
    KeyboardInterrupt at once; the API puts the previous handlers back when the run returns.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def install(self, interrupt: bool = False) -> None:
        import signal

        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals; the job's own stay as they are
        for name in (*self.SIGNALS, "SIGINT") if interrupt else self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self.previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    @classmethod
    def ignore_from_now(cls) -> None:
        """For a process that only exits after its run: a walltime signal arriving during
        teardown must not kill a finished rank, since exit 138 marks a complete job FAILED and
        hides the exit code 3 a requeue relies on. Python's finalisation resets the handlers it
        installed to the default (death) but leaves an ignored signal ignored. Children inherit
        ignored signals, so only a process about to exit may call this."""
        import signal

        for name in cls.SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    def _handle(self, number, frame) -> None:
        import signal

        name = signal.Signals(number).name
        if name == "SIGINT" and self.received:
            raise KeyboardInterrupt
        self.received = name


ignore_stop_signals = StopRequest.ignore_from_now


def local_stop(stop: StopRequest, deadline: Deadline, shard_comm=None) -> int:
    """This rank's reason to stop after this chunk, as an index into ``AGREED_STOPS``; with
    ``shard_comm`` (data shards across ranks) its shard group's, agreed: the group's ranks meet
    in every leapfrog's sum, so one stopping alone would leave the others waiting there."""
    if stop.received:
        reason = AGREED_STOPS.index(STOP_SIGNAL)
    else:
        reason = AGREED_STOPS.index(deadline.reason_to_stop(time.time()))
    if shard_comm is None:
        return reason
    from mpi4py import MPI

    return shard_comm.allreduce(reason, op=MPI.MAX)


def agreed_stop(comm, stop: StopRequest, deadline: Deadline, shard_comm=None) -> str | None:
    """Collective: the strongest reason any rank has to stop now (None: go on)."""
    from mpi4py import MPI

    return AGREED_STOPS[comm.allreduce(local_stop(stop, deadline, shard_comm), op=MPI.MAX)]
