"""Phase 7, warmup: in checkpointed chunks or in one program, as the sampler needs."""

from __future__ import annotations

import time

import numpy as np

from mpi_pymc.driver.job import Chains, Job, Sampled
from mpi_pymc.driver.progress import WARMING_UP, Progress
from mpi_pymc.driver.signals import agreed_stop
from mpi_pymc.sampling.stopping import Deadline


def warm_up(job: Job, chains: Chains, saver, progress: Progress, deadline: Deadline) -> Sampled:
    """Warmup in chunks (checkpointed after each) or in one program, as the sampler needs."""
    from mpi4py import MPI

    config, sampler = job.config, chains.sampler

    # The least advanced chain of the job: every rank takes the same number of warmup chunks
    # (each ends in collectives) even when its chains ended warmup early.
    def least_iteration(state) -> int:
        return job.comm.allreduce(int(sampler.iterations(state).min()), op=MPI.MIN)

    draws_done = chains.ckpt.draws_done if chains.ckpt is not None else 0
    iteration = least_iteration(chains.state) if chains.ckpt is not None else 0
    stopped_by = None
    if iteration < config.tune and sampler.warmup_in_chunks:
        while iteration < config.tune and not stopped_by:
            t_chunk = time.time()
            n = min(config.chunk_draws, config.tune - iteration)
            chains.state = sampler.warmup(chains.state, n)
            iteration = least_iteration(chains.state)
            saver.save(chains.state, iteration, 0)
            progress.update(WARMING_UP, iteration, 0)
            deadline.record(time.time() - t_chunk)
            stopped_by = agreed_stop(job.comm, job.stop, deadline, job.shard_comm)
    elif iteration < config.tune:
        chains.state = sampler.warmup(chains.state, config.tune)
        iteration = config.tune
        saver.save(chains.state, iteration, 0)
        progress.update(WARMING_UP, config.tune, 0)
        stopped_by = agreed_stop(job.comm, job.stop, deadline, job.shard_comm)
    np.asarray(sampler.iterations(chains.state))  # wait for the device
    completed = np.full(int(config.chains or 0), draws_done, dtype=np.int64)
    return Sampled(draws_done, iteration, stopped_by, completed)
