"""How a failure leaves the job: one line, a non-zero exit on every rank, never a hang.

* A problem every rank knows about (bad settings, a model that fails to load on some rank) is
  *agreed*: ranks allgather their verdicts at a phase boundary, every rank raises
  :class:`AgreedError`, rank 0 prints one line, all exit with ``EXIT_USER``.
* Anything else (an exception on one rank while the others may be inside a collective) is
  printed with the rank and host as prefix and ends the whole job with ``MPI_Abort``.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar, cast

from mpi_pymc.core.config import UserError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER = 2
EXIT_CHECKPOINTED = 3  # stopped by SIGTERM/SIGUSR1 after writing a checkpoint: resume later


class AgreedError(UserError):
    """Raised on every rank at once; only rank 0 reports it."""


def agree(comm, error: BaseException | None, phase: str) -> None:
    """Phase boundary: if any rank failed, every rank raises the same AgreedError."""
    message = None
    if error is not None:
        message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    verdicts = comm.allgather(message)
    failed = [(rank, msg) for rank, msg in enumerate(verdicts) if msg is not None]
    if not failed:
        return
    if comm.Get_size() == 1:
        raise AgreedError(failed[0][1])
    # Identical failures on every rank are reported once, without rank numbers.
    if len(failed) == comm.Get_size() and len({msg for _, msg in failed}) == 1:
        raise AgreedError(failed[0][1])
    ranks = ", ".join(str(rank) for rank, _ in failed)
    raise AgreedError(f"{phase} failed on rank(s) {ranks}: rank {failed[0][0]}: {failed[0][1]}")


def os_error_cause(exc: OSError) -> str:
    """The cause of a failed write in a few words ("No space left on device"), also from
    h5py's long messages that bury it in HDF5's error stack."""
    if exc.strerror:
        return exc.strerror
    buried = re.search(r"error message = '([^']+)'", str(exc))
    if buried:
        return buried.group(1)
    return str(exc).split(" (")[0] or type(exc).__name__


T = TypeVar("T")


def on_every_rank(comm, phase: str, work: Callable[[], T], catch=(UserError,), reword=None) -> T:
    """Run ``work`` on this rank, then agree: if it failed anywhere, every rank raises.

    ``catch`` lists the exceptions that count as this phase's failures (anything else is a bug
    and aborts the job); ``reword`` turns one into the user's message.
    """
    result, error = None, None
    try:
        result = work()
    except catch as exc:
        error = UserError(reword(exc)) if reword else exc
    agree(comm, error, phase)
    return cast(T, result)


def rank_prefix(comm) -> str:
    rank = comm.Get_rank() if comm is not None else 0
    return f"r{rank} {socket.gethostname()} |"


def abort(comm, exc: BaseException) -> None:
    """Report an unexpected exception with rank and host, then end every rank.

    ``MPI_PYMC_DEBUG=1`` adds the traceback.
    """
    if os.environ.get("MPI_PYMC_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{rank_prefix(comm)} error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    if comm is not None and comm.Get_size() > 1:
        comm.Abort(EXIT_FAILURE)
    sys.exit(EXIT_FAILURE)


def exit_code_of(comm, work) -> int:
    """Run ``work()`` on this rank as the CLI does: the exit code, with failures reported.

    An agreed failure prints one line on rank 0 (``EXIT_USER``); a failure this rank alone
    knows, or a bug, ends every rank through :func:`abort`; ``work``'s own result is the code.
    """
    try:
        return int(work())
    except AgreedError as exc:
        if comm.Get_rank() == 0:
            print(f"mpi_pymc: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER
    except UserError as exc:
        # Known to this rank only: the others may be waiting in a collective.
        abort(comm, exc)
        return EXIT_USER
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        abort(comm, exc)
        return EXIT_FAILURE
