"""Phase 2, the output claim: rank 0 locks the output path and judges the existing files before
anything is written; the lock is released when the run ends."""

from __future__ import annotations

import os

from mpi_pymc.core.config import RunConfig, UserError
from mpi_pymc.core.errors import AgreedError, agree
from mpi_pymc.driver.job import Job


def _remove_previous(out: str) -> None:
    """``--overwrite``: the old output, its shards and its checkpoint go."""
    from mpi_pymc.output.checkpoint import checkpoint_path, remove_checkpoint
    from mpi_pymc.output.layout import remove_output

    remove_output(out)
    remove_checkpoint(checkpoint_path(out))


def _check_output(config: RunConfig) -> None:
    """Refuse to damage existing files; done by rank 0 before anything is written."""
    out = str(config.out)
    exists = os.path.lexists(out)
    if exists and not (config.overwrite or config.resume):
        raise UserError(
            f"output '{out}' already exists: pass --overwrite to replace it, --resume to "
            "continue it, or --out to write elsewhere"
        )
    if config.resume and not exists:
        raise UserError(f"--resume given but '{out}' does not exist: run without --resume first")


def _check_output_directory(config: RunConfig) -> None:
    """The output's directory exists and takes files (rank 0)."""
    directory = os.path.dirname(os.path.abspath(str(config.out)))
    if not os.path.isdir(directory):
        raise UserError(f"output directory '{directory}' does not exist: create it first")
    import tempfile

    try:  # a real probe: permission bits do not tell root (or read-only mounts) the truth
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".mpi_pymc_probe"):
            pass
    except OSError as exc:
        raise UserError(
            f"output directory '{directory}' is not writable ({exc.strerror}): choose another --out"
        ) from None


def _claim_output(config: RunConfig):
    """Rank 0: take the output's lock, then judge the existing files — in this order, so no
    other job can change them between the verdict and the writes (see output_lock)."""
    from mpi_pymc.output import lock as output_lock

    _check_output_directory(config)
    lock = output_lock.acquire(str(config.out), output_lock.stale_after_from())
    try:
        _check_output(config)
    except UserError:
        lock.release()
        raise
    return lock


def check_output_path(job: Job) -> None:
    """Rank 0 locks and checks the output path (one view of the file system); every rank hears
    it. The lock is held until the run ends (:func:`release_output`). With data shards across
    ranks each shard's rank 0 claims its own output (shard 0 the run's), and every rank of the
    job hears a refusal (:attr:`Job.everyone`): the other shards' ranks must not go on to wait
    for it, and a claim already taken is released."""
    refusal = None
    try:
        job.lock = _claim_output(job.config) if job.rank == 0 else None
    except UserError as exc:
        refusal = exc
    try:
        agree(job.everyone, refusal, "checking the output path")
    except AgreedError:
        release_output(job)
        raise
    if job.lock is not None and job.lock.broke:
        job.say(f"note: {job.lock.broke}")


def release_output(job: Job) -> None:
    """The run is over, however it ended: the next job may take the output."""
    if job.lock is not None:
        job.lock.release()
        job.lock = None
