"""``mpi_pymc.submit``: a SLURM batch job from Python, with a handle to follow it.

The job script is the ``jobscript`` machinery's (the templates in ``jobs/``), filled in from
``submit``'s resources and ``sample``'s options; a model object travels pickled beside the
output, so the job runs ``python -m mpi_pymc run OUT.job/model.pkl`` like any model file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time as clock
from dataclasses import dataclass
from pathlib import Path

from mpi_pymc.core.config import UserError
from mpi_pymc.core.mpi_env import without_own_transports

# squeue's states of a job that has not ended yet.
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


@dataclass
class SlurmJob:
    """A submitted job: its id, output file, job script and log."""

    job_id: str
    out: str
    script: Path
    log_path: Path

    def state(self) -> str:
        """SLURM's state: PENDING, RUNNING, ... then COMPLETED, FAILED, CANCELLED, TIMEOUT
        (``UNKNOWN`` once the controller has forgotten a finished job)."""
        queued = _slurm(["squeue", "-h", "-j", self.job_id, "-o", "%T"], check=False)
        if queued.strip():
            return queued.split()[0]
        shown = _slurm(["scontrol", "show", "job", "-o", self.job_id], check=False)
        found = re.search(r"\bJobState=(\w+)", shown)
        return found.group(1) if found else "UNKNOWN"

    def wait(self, timeout: float | None = None, poll: float = 2.0) -> str:
        """Block until the job has ended; its final state."""
        deadline = None if timeout is None else clock.monotonic() + timeout
        while (state := self.state()) in _ACTIVE:
            if deadline is not None and clock.monotonic() > deadline:
                raise TimeoutError(f"job {self.job_id} still {state} after {timeout:g} s")
            clock.sleep(poll)
        return state

    def result(self, timeout: float | None = None):
        """Wait, then the ArviZ object of a complete run; a failed job raises its error line."""
        from mpi_pymc.api import RankFailure, open_result

        state = self.wait(timeout)
        complete = _complete(self.out)
        if complete:
            return open_result(self.out)
        errors = [
            line.split("mpi_pymc: error: ", 1)[-1]
            for line in self.log().splitlines()
            if "mpi_pymc: error: " in line or " | error: " in line
        ]
        detail = errors[-1] if errors else f"see its log {self.log_path}"
        raise RankFailure(
            f"job {self.job_id} ended {state} without a complete {self.out}: {detail}"
        )

    def cancel(self) -> None:
        """``scancel`` the job (its ranks get SIGTERM: a running one leaves a checkpoint)."""
        _slurm(["scancel", self.job_id])

    def log(self) -> str:
        """The job's log so far (every rank's stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def submit(
    model=None,
    *,
    time: str,
    nodes: int = 1,
    gpus_per_node: int | None = None,
    ranks_per_node: int | None = None,
    cpus_per_rank: int | None = None,
    account: str | None = None,
    partition: str | None = None,
    job_name: str | None = None,
    template: str | None = None,
    signal_before: int | None = None,
    python: str | None = None,
    **sample_options,
) -> SlurmJob:
    """Write a job script for ``model`` and ``sbatch`` it; returns a :class:`SlurmJob`.

    Resources are the ``jobscript`` command's: ``gpus_per_node`` (one rank per GPU), or CPU
    nodes when it is None (``ranks_per_node`` x ``cpus_per_rank``); ``time`` is HH:MM:SS.
    ``template`` picks a job template (default as ``jobscript`` chooses; ``walltime_resume``
    with ``signal_before`` for runs that may outlast their time limit). ``python`` is the
    job's interpreter (default: this one). ``sample_options`` are :func:`mpi_pymc.sample`'s.
    The job script, the pickled model and the log go to ``OUT.job/``.
    """
    from mpi_pymc import jobscript
    from mpi_pymc.api import default_out, pickle_model, run_options, settings

    model, config = settings(model, **sample_options)
    out = os.path.abspath(config.out or default_out(model or config.model_path))
    workdir = Path(out + ".job")
    try:
        if model is not None:
            spec = str(workdir / "model.pkl")
            pickle_model(model, Path(spec))
        else:
            path = os.path.abspath(str(config.model_path))
            spec = f"{path}:{config.model_name}" if config.model_name else path
        script = _write_job_script(
            workdir / "job.sbatch",
            [spec, "--time", time, "--nodes", str(nodes), "--python", python or sys.executable]
            + (["--cpu"] if gpus_per_node is None else ["--gpus-per-node", str(gpus_per_node)])
            + _flags(
                ranks_per_node=ranks_per_node,
                cpus_per_rank=cpus_per_rank,
                account=account,
                partition=partition,
                job_name=job_name,
                template=template,
                signal_before=signal_before,
            )
            + [*jobscript.run_option_words(_job_options(run_options(config))), "--out", out],
        )
    except UserError:
        shutil.rmtree(workdir, ignore_errors=True)  # nothing of a refused job stays behind
        raise
    log_path = workdir / "slurm-%j.out"
    answer = _slurm(
        ["sbatch", "--parsable", f"--output={log_path}", f"--chdir={os.getcwd()}", str(script)]
    )
    job_id = answer.strip().split(";")[0]
    return SlurmJob(job_id, out, script, workdir / f"slurm-{job_id}.out")


def _flags(**values) -> list[str]:
    """``--name value`` words for the values given."""
    words: list[str] = []
    for name, value in values.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return words


def _job_options(options: dict) -> dict:
    """The run options a batch job takes from submit(): its output is given apart, and a bar
    has no terminal to draw on."""
    return {k: v for k, v in options.items() if k not in ("out", "progress")}


def _write_job_script(path: Path, words: list[str]) -> Path:
    """Render the job script for ``jobscript WORDS`` (validated as that command validates)."""
    from mpi_pymc import jobscript

    request = jobscript.request_from_args(_jobscript_args(words))
    template_file = jobscript.template_path(request.template)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jobscript.render(template_file.read_text(), request, template_file.stem))
    return path


def _jobscript_args(words: list[str]):
    """Parse ``words`` with the ``jobscript`` command's parser; its complaint as a UserError."""
    import argparse

    from mpi_pymc import jobscript

    parser = argparse.ArgumentParser(prog="mpi_pymc.submit")
    jobscript.add_parser(parser.add_subparsers(dest="command"))
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            return parser.parse_args(["jobscript", *words])
    except SystemExit:
        lines = complaint.getvalue().strip().splitlines()
        raise UserError(lines[-1] if lines else "invalid submit() arguments") from None


def _slurm(command: list[str], check: bool = True) -> str:
    """A SLURM command's stdout; a failure (or no SLURM here) is a UserError when ``check``."""
    try:
        # sbatch exports this environment to the job: not the transports this process chose
        # for its own MPI (the job's ranks choose theirs, on as many nodes as it has).
        environ = without_own_transports(dict(os.environ))
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ)
    except FileNotFoundError:
        raise UserError(f"'{command[0]}' not found: submit() needs a SLURM login node") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"'{' '.join(command)}' did not answer within 60 s") from None
    if check and proc.returncode != 0:
        raise UserError(f"{command[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _complete(path: str) -> bool:
    """Whether ``path`` holds a finished run (every chain has all its draws, or its goal)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            stopped_by = f.attrs.get("stopped_by")
            return stopped_by is not None and "diagnostics" in f.attrs
    except (OSError, KeyError):
        return False
