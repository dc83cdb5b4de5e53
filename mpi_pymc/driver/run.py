"""The SPMD driver behind ``python -m mpi_pymc run`` and ``mpi_pymc.sample``: :func:`run` is the
list of phases, each in its own module of this package.

Every rank runs :func:`run` with the same arguments. Ranks talk only at phase boundaries
(agreeing on errors, seed, fingerprints) and once per chunk (progress); never while sampling."""

from __future__ import annotations

import os
import shutil
import sys
import time

from mpi_pymc.core.config import RunConfig
from mpi_pymc.core.errors import AgreedError
from mpi_pymc.driver.chains import compile_programs, init_chains, record_devices
from mpi_pymc.driver.checkpointing import CheckpointSaver
from mpi_pymc.driver.chunks import sample_in_chunks
from mpi_pymc.driver.claim import check_output_path, release_output
from mpi_pymc.driver.finish import add_groups, finish
from mpi_pymc.driver.job import Job, RunResult
from mpi_pymc.driver.messages import start_line
from mpi_pymc.driver.model import (
    compile_and_fingerprint,
    load_the_model,
    shard_the_data,
    share_data,
)
from mpi_pymc.driver.output_file import job_end_time, open_output
from mpi_pymc.driver.progress import COMPILING, LOADING, STARTING, WARMING_UP, Progress
from mpi_pymc.driver.resume import check_resume_matches, settle_seed
from mpi_pymc.driver.settings import (
    bind_devices,
    enter_shard_groups,
    guard_launcher,
    settle_settings,
    start_shard_group_jax,
)
from mpi_pymc.driver.warmup import warm_up
from mpi_pymc.output.packing import pack_on_rank0
from mpi_pymc.sampling.stopping import Deadline


def run(config: RunConfig, comm=None, echo=print, model=None, interrupt=False) -> RunResult:
    """Sample on every rank of ``comm``; rank 0 reports through ``echo``.

    The model is ``config.model_path`` (imported on every rank) or, from the Python API, the
    ``pm.Model`` passed as ``model`` (built on every rank, or unpickled by each). The phases
    run in order; each ends in an agreement, so a failure anywhere stops every rank there.
    ``interrupt``: Ctrl-C stops the run after its chunk with a checkpoint (the Python API).
    """
    from mpi4py import MPI

    job = Job(comm if comm is not None else MPI.COMM_WORLD.Clone(), config, echo)
    job.stop.install(interrupt)
    progress = Progress(
        job.rank == 0 and (config.progress if config.progress is not None else sys.stderr.isatty()),
        config.tune + config.draws,
        records=None if job.rank == 0 else False,
        start=job.t_start,
    )
    job.echo = lambda line: progress.say(echo, line)  # never onto the progress line
    try:
        return _run_phases(job, model, progress)
    except AgreedError:
        if job.writer is not None:  # every rank raised it at the same point: close together
            job.writer.abandon()
        raise
    finally:
        progress.close()  # a failure's line starts on a line of its own
        release_output(job)
        if job.scratch is not None and job.rank == 0:  # a shard s > 0's copy of the output
            _remove_scratch_unless_resumable(job)
        if interrupt:
            job.stop.restore()


def _remove_scratch_unless_resumable(job: Job) -> None:
    """A shard s > 0's folder goes when the run is complete (or never checkpointed); while its
    checkpoint is there, ``--resume`` on the same layout continues from it."""
    from mpi_pymc.output.checkpoint import checkpoint_path

    if job.scratch is not None and not os.path.exists(checkpoint_path(str(job.config.out))):
        shutil.rmtree(job.scratch, ignore_errors=True)


def _run_phases(job: Job, model, progress: Progress) -> RunResult:
    """The driver's phases, in order; ``progress`` names each before it starts."""
    progress.phase(STARTING)
    guard_launcher(job.size)
    enter_shard_groups(job)
    original = job.config
    job.config = settle_settings(job, model is not None)
    progress.total = max(job.config.tune + job.config.draws, 1)
    binding = bind_devices(job)
    start_shard_group_jax(job, binding.platform)
    check_output_path(job)
    ckpt = settle_seed(job, original)
    job.timings["startup"] = time.perf_counter() - job.t_start
    progress.phase(LOADING)
    with job.timed("load_model"):
        model = load_the_model(job, model)
    progress.phase(COMPILING)
    with job.timed("compile"):
        compiled = compile_and_fingerprint(job, model)
    if ckpt is not None:
        check_resume_matches(ckpt, compiled.fingerprint, job.config.settings_for_fingerprint())
    with job.timed("data_shards"):
        compiled = shard_the_data(job, model, compiled)
    node_data = share_data(job, binding.platform, compiled)
    job.say(start_line(job.config, job.size, resuming=ckpt is not None))
    with job.timed("init"):
        chains = init_chains(job, compiled, model, ckpt, binding.platform)
    binding = record_devices(binding, chains)
    with job.timed("jit"):
        compile_programs(job, chains)
    writer, io = open_output(job, chains, binding, node_data)
    deadline = Deadline.start(job.launched_at, job.config.max_time, job_end_time(job))
    saver = CheckpointSaver(
        job.config, compiled, chains.root_seed, job.comm, chains.chain_group, job.everyone
    )
    progress.phase(WARMING_UP)
    with job.timed("warmup"):
        sampled = warm_up(job, chains, saver, progress, deadline)
    sampled = sample_in_chunks(job, chains, sampled, writer, saver, progress, deadline)
    progress.close()
    result = finish(job, chains, sampled, writer, io)
    # Every rank's phases (rank 0's are `timings`): how each phase scales with the ranks.
    mine = {**job.timings, "checkpoint_writes": saver.seconds}
    writer.set_attrs({"rank_timings": job.comm.allgather(mine)})
    writer.close()
    job.comm.Barrier()
    if node_data is not None:
        node_data.free()  # nothing reads the model's data any more
    if not result.resumable:
        saver.remove()
        add_groups(job, model)
        if io == "shards" and job.config.pack:  # one file, unless too large (then it says so)
            _pack(job)
    return result


def _pack(job: Job) -> None:
    """Pack the shards into OUT; its line is printed, except under ``--summary warnings`` where
    the closing line already named the file and only a file left shard-backed is news."""
    if job.config.summary != "warnings":
        pack_on_rank0(job.comm, str(job.config.out), echo=job.echo)
        return
    packed = pack_on_rank0(job.comm, str(job.config.out), echo=lambda line: None)
    if packed.state == "kept":
        job.say(packed.line())
