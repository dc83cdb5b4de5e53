"""The output lock: one job at a time may write, overwrite or resume an output.

Rank 0 creates ``OUT.lock`` with ``O_CREAT|O_EXCL`` (atomic on local file systems and on the
shared ones clusters use: NFSv3+, Lustre, GPFS) before the output check decides anything and
before ``--overwrite`` removes anything, and removes it when the run ends (done, stopped with a
checkpoint, or an agreed failure). The file holds JSON naming its holder: host, pid, the pid's
process start time, the SLURM job id when there is one, and when the run started. Its
modification time is the *heartbeat*: a thread of rank 0 touches it every
``stale_after / 10`` seconds for as long as the run lives (compiling and long chunks included).

A second job that finds the lock is refused with one line naming the holder, unless the lock is
*stale* — its job died without removing it (SIGKILL, node failure) — which is decided from:

* **same host**: the holder's pid no longer exists, or now belongs to a process started at
  another time (the pid was reused);
* **SLURM**: the holder's job id is one ``squeue`` no longer knows (asked only for a holder on
  another host, and only believed when ``squeue`` answers);
* **heartbeat**: the lock was not touched for ``MPI_PYMC_LOCK_STALE_AFTER`` seconds (default
  600): how a job that died with its node is found out from another node of a shared file
  system, SLURM or not.

A stale lock is moved aside (one rename, so of two jobs breaking it at once only one succeeds),
checked to be the one judged, and deleted; the new job then takes the lock as usual.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

from mpi_pymc.core.config import UserError

STALE_AFTER_ENV = "MPI_PYMC_LOCK_STALE_AFTER"
DEFAULT_STALE_AFTER = 600.0


def lock_path(out: str) -> str:
    return str(out) + ".lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in it."""

    host: str
    pid: int
    pid_started: int | None  # the process's start time (clock ticks after boot), for pid reuse
    slurm_job_id: str | None
    started_at: float  # time.time() when the lock was taken

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Holder:
        """The holder a lock names; ValueError for an empty or garbled lock."""
        try:
            fields = json.loads(text)
            return cls(
                host=str(fields["host"]),
                pid=int(fields["pid"]),
                pid_started=None if fields["pid_started"] is None else int(fields["pid_started"]),
                slurm_job_id=fields["slurm_job_id"] and str(fields["slurm_job_id"]),
                started_at=float(fields["started_at"]),
            )
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable lock ({type(exc).__name__})") from None

    def describe(self) -> str:
        slurm = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"host {self.host}, pid {self.pid}{slurm}, since {since}"


@dataclass(frozen=True)
class Facts:
    """What a job looking at someone's lock knows about it now."""

    now: float
    heartbeat: float  # the lock's modification time
    same_host: bool
    pid_started_now: int | None = None  # same host: start time of the process with that pid
    pid_exists: bool = True  # same host: whether a process with that pid exists
    this_pid: int = 0
    slurm_job_known: bool | None = None  # None: not asked, or squeue gave no answer
    stale_after: float = DEFAULT_STALE_AFTER


def stale_reason(holder: Holder | None, facts: Facts) -> str | None:
    """Why the lock's job is gone (None: it may be alive, so the lock holds).

    ``holder`` is None for a lock whose content cannot be read (its job died between creating
    and writing it, or it is not ours): only its heartbeat can tell.
    """
    if holder is not None and facts.same_host:
        if not facts.pid_exists:
            return f"process {holder.pid} on {holder.host} no longer exists"
        if holder.pid_started is not None and facts.pid_started_now != holder.pid_started:
            return f"pid {holder.pid} on {holder.host} now belongs to another process"
        if holder.pid == facts.this_pid:
            return "it was left by an earlier run in this same process"
    if holder is not None and holder.slurm_job_id and facts.slurm_job_known is False:
        return f"SLURM job {holder.slurm_job_id} has ended"
    age = facts.now - facts.heartbeat
    if age > facts.stale_after:
        return (
            f"it was not refreshed for {age:.0f} s (more than {STALE_AFTER_ENV}="
            f"{facts.stale_after:g})"
        )
    return None


def held_message(out: str, holder: Holder | None, facts: Facts) -> str:
    """The one line a job refused by a live lock prints."""
    who = holder.describe() if holder is not None else "a job whose lock cannot be read"
    return (
        f"output '{out}' is in use by another job ({who}; heartbeat "
        f"{max(facts.now - facts.heartbeat, 0):.0f} s ago): wait for it to end or choose another "
        f"--out; if that job is gone, delete {lock_path(out)}"
    )


def stale_after_from(environ=os.environ) -> float:
    """``MPI_PYMC_LOCK_STALE_AFTER`` in seconds (default 600)."""
    text = environ.get(STALE_AFTER_ENV, "")
    if not text:
        return DEFAULT_STALE_AFTER
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{STALE_AFTER_ENV}={text!r} must be a positive number of seconds")
    return value


# --- facts about processes and jobs (impure) ---------------------------------------------------


def process_state(pid: int) -> tuple[bool, int | None]:
    """Whether process ``pid`` lives on this host, and its start time (clock ticks after boot;
    None where there is no /proc to ask). A zombie counts as gone: in containers whose init
    does not reap, a killed process stays one for good."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False, None
        return _signal_reaches(pid), None
    except OSError:
        return _signal_reaches(pid), None
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False, None
    return True, int(fields[19])


def _signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def slurm_job_known(job_id: str) -> bool | None:
    """Whether SLURM still knows job ``job_id`` (None: no squeue, or no clear answer)."""
    from mpi_pymc.core.slurm import squeue

    answer = squeue(job_id, "%T")
    if answer is None:
        return None
    if answer.returncode == 0:
        return bool(answer.stdout.strip())
    return False if "invalid job id" in answer.stderr.lower() else None


def me(environ=os.environ) -> Holder:
    """This process as a lock holder."""
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_started=process_state(os.getpid())[1],
        slurm_job_id=environ.get("SLURM_JOB_ID") or None,
        started_at=time.time(),
    )


def facts_about(holder: Holder | None, heartbeat: float, stale_after: float) -> Facts:
    """Look up what tells whether ``holder``'s job is alive (cheapest conclusive facts first)."""
    host = socket.gethostname()
    same_host = holder is not None and holder.host == host
    facts = Facts(time.time(), heartbeat, same_host, this_pid=os.getpid(), stale_after=stale_after)
    if holder is None:
        return facts
    if same_host:  # conclusive either way: no need to ask SLURM
        exists, started = process_state(holder.pid)
        return replace(facts, pid_exists=exists, pid_started_now=started)
    if holder.slurm_job_id:
        return replace(facts, slurm_job_known=slurm_job_known(holder.slurm_job_id))
    return facts


# --- the lock ---------------------------------------------------------------------------------


class OutputLock:
    """A lock this process holds: refreshed by a heartbeat thread, removed by :meth:`release`."""

    def __init__(self, path: str, holder: Holder, stale_after: float):
        self.path = path
        self.holder = holder
        self.broke: str | None = None  # why a stale lock was taken over, for the user
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(stale_after / 10,), name="mpi_pymc-lock", daemon=True
        )
        self._thread.start()

    def _ours(self) -> bool:
        # By content, not inode: a file system may give a new lock the inode of a removed one.
        found = _read(self.path)
        return found is not None and found[0] == self.holder.to_json()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self._ours():
                return  # taken over (judged stale): never touch another job's lock
            try:
                os.utime(self.path)
            except OSError:
                pass  # a passing file system hiccup; the next beat tries again

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._ours():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass


def _read(path: str) -> tuple[str, float] | None:
    """The lock's text and heartbeat (None: it vanished meanwhile)."""
    try:
        with open(path) as handle:
            heartbeat = os.fstat(handle.fileno()).st_mtime
            return handle.read(), heartbeat
    except FileNotFoundError:
        return None


def _take_away(path: str, judged: str) -> bool:
    """Remove the stale lock whose text is ``judged``: moved aside first, so that of two jobs
    breaking it at once only one removes it, and a fresh lock that replaced it survives."""
    aside = f"{path}.stale.{socket.gethostname()}.{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    with open(aside) as handle:
        moved = handle.read()
    if moved != judged:  # a live job's lock: put it back (unless a third job took the name)
        try:
            os.link(aside, path)
        except OSError:
            pass
        os.remove(aside)
        return False
    os.remove(aside)
    return True


def acquire(out: str, stale_after: float, holder: Holder | None = None) -> OutputLock:
    """Take ``OUT.lock`` for this process, taking over a stale one; UserError when held."""
    path = lock_path(out)
    holder = holder or me()
    broke = None
    for _ in range(5):  # only lost races with other jobs go round again
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            if not isinstance(exc, FileExistsError):
                raise UserError(f"cannot create the lock {path}: {exc.strerror}") from None
            found = _read(path)
            if found is None:
                continue
            text, heartbeat = found
            try:
                other: Holder | None = Holder.from_json(text)
            except ValueError:
                other = None
            facts = facts_about(other, heartbeat, stale_after)
            reason = stale_reason(other, facts)
            if reason is None:
                raise UserError(held_message(out, other, facts)) from None
            if _take_away(path, text):
                who = other.describe() if other is not None else "an unreadable lock"
                broke = f"took over the stale lock {path} ({who}): {reason}"
            continue
        try:
            os.write(fd, holder.to_json().encode())
            os.fsync(fd)
        except OSError as exc:
            os.remove(path)
            raise UserError(f"cannot write the lock {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        lock = OutputLock(path, holder, stale_after)
        lock.broke = broke
        return lock
    raise UserError(f"could not take {path}: other jobs keep taking it; try again")
