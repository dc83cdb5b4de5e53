"""Launch real ``mpirun`` / ``python -m mpi_pymc`` subprocesses for the tests, with timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpi_pymc.core.mpi_env import find_mpirun, local_mpi_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EIGHT_SCHOOLS = EXAMPLES / "eight_schools.py"
REFERENCE = ROOT.parent / "shared" / "reference"


def mpirun_or_skip() -> str:
    try:
        return find_mpirun()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def env() -> dict[str, str]:
    out = local_mpi_env()
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    out.pop("MPI_PYMC_DEBUG", None)
    return out


# Open MPI 5's launcher sometimes fails before it starts any rank ("ptl_tool: problems getting
# address ..." then this line; seen once in CI on a loaded machine, and in other projects' CI).
# Nothing of the program under test ran, so such a start is tried again; any other failure,
# including every failure of a rank, is returned as it is.
LAUNCHER_DID_NOT_START = ("The PMIx server's listener thread failed to start",)


def launch(cmd: list[str], timeout: float, tries: int = 3, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd)`` with output captured as text; fails the test if it outlives
    ``timeout`` seconds, and starts it again when the MPI launcher itself did not start."""
    for attempt in range(tries):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{' '.join(map(str, cmd))} hung for {timeout}s:\n{exc.stdout}\n{exc.stderr}"
            )
        if proc.returncode == 0 or not any(m in proc.stderr for m in LAUNCHER_DID_NOT_START):
            return proc
        print(f"the MPI launcher did not start (try {attempt + 1} of {tries}):\n{proc.stderr}")
    return proc


def run_ranks(
    nranks: int | None,
    args: list[str],
    cwd: Path,
    timeout: float = 240,
    module: str = "mpi_pymc",
    extra_env: dict | None = None,
    drop_env: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """``mpirun -n N python -m mpi_pymc ARGS`` (no mpirun when ``nranks`` is None), without
    the variables ``drop_env`` names unless ``extra_env`` sets them."""
    cmd = [sys.executable, "-m", module, *args]
    if nranks is not None:
        cmd = [mpirun_or_skip(), "-n", str(nranks), *cmd]
    environment = {k: v for k, v in env().items() if k not in drop_env}
    environment.update(extra_env or {})
    return launch(cmd, timeout, cwd=cwd, env=environment)


def start_until_checkpoint(
    nranks: int, args: list[str], cwd: Path, out, after_draws: int, timeout: float = 180
) -> subprocess.Popen:
    """Start ``mpirun -n N python -m mpi_pymc ARGS`` and return it once its checkpoint holds
    ``after_draws`` draws (fails the test if it ends or stalls before)."""
    cmd = [mpirun_or_skip(), "-n", str(nranks), sys.executable, "-m", "mpi_pymc", *args]
    return start_until_draws(cmd, cwd, out, after_draws, timeout)


def start_until_draws(
    cmd: list[str], cwd: Path, out, after_draws: int, timeout: float, tries: int = 3
) -> subprocess.Popen:
    """Start ``cmd`` (a run writing ``out``) and return it once its checkpoint holds
    ``after_draws`` draws; fails the test if it ends or stalls before, unless the MPI launcher
    itself did not start (then it starts it again, as :func:`launch` does)."""
    import time

    for attempt in range(tries):
        proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while checkpoint_draws(out) < after_draws:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                stdout, stderr = proc.communicate()
                launcher = any(m in stderr for m in LAUNCHER_DID_NOT_START)
                if launcher and proc.returncode != 0 and attempt + 1 < tries:
                    print(
                        f"the MPI launcher did not start (try {attempt + 1} of {tries}):\n{stderr}"
                    )
                    break
                pytest.fail(f"run ended or stalled before {after_draws} draws: {(stdout, stderr)}")
            time.sleep(0.02)
        else:
            return proc
    raise AssertionError("unreachable: the last try returns or fails")


def error_lines(stderr: str) -> list[str]:
    """Lines mpi_pymc itself printed (launcher and library noise removed)."""
    return [line for line in stderr.splitlines() if line.startswith("mpi_pymc: error:")]


def rank_pids(out) -> list[int]:
    """PIDs of the Python ranks (not the launcher) whose command line names ``out``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in argv and Path(argv[0].decode()).name.startswith("python"):
            found.append(int(entry))
    return sorted(found)


def checkpoint_draws(out) -> int:
    """``draws_done`` of ``OUT.ckpt`` (-1 while there is none); safe while a run writes it."""
    import json

    import numpy as np

    try:
        with np.load(str(out) + ".ckpt") as data:
            return int(json.loads(str(data["meta"]))["draws_done"])
    except (OSError, ValueError, KeyError):
        return -1


def wait_ranks_gone(out, timeout: float = 30) -> None:
    """The launcher may return before the last rank has exited; fail if one lingers.

    A killed rank can hold its HDF5 file lock for a moment while the kernel tears it down
    (a defunct process with an empty command line), so also wait until ``out`` can be opened.
    """
    import time

    import h5py

    deadline = time.monotonic() + timeout
    while True:
        if not rank_pids(out):
            try:
                h5py.File(out, "r").close()
                return
            except BlockingIOError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"a rank writing {out} outlived its job by {timeout}s")
        time.sleep(0.1)
