"""Phase 8, sampling in chunks: draw, write, checkpoint and check the --until-ess goal chunk by
chunk until the draws, the goal or a stop end it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from mpi_pymc.core.errors import on_every_rank as _on_every_rank
from mpi_pymc.driver.checkpointing import injected_write_fault, what_is_kept
from mpi_pymc.driver.job import Chains, Job, Sampled
from mpi_pymc.driver.progress import SAMPLING
from mpi_pymc.driver.signals import AGREED_STOPS, local_stop
from mpi_pymc.sampling.stopping import (
    STOP_GOAL,
    goal_met,
    goal_reachable,
    next_chunk,
)


def sample_in_chunks(
    job: Job, chains: Chains, sampled: Sampled, writer, saver, progress, deadline
) -> Sampled:
    """Draw, write and checkpoint chunk by chunk until the draws, a goal or a stop end it."""
    config, sampler, compiled = job.config, chains.sampler, chains.compiled
    t0 = time.perf_counter()
    io_seconds = goal_seconds = 0.0
    stat_names = [v.name for v in writer.layout.draw_groups["sample_stats"]]
    if sampled.draw:
        # A resumed run counts the divergences of the draws already in the file, so its report
        # and the file's `divergences` are those of the whole run.
        mine = np.asarray(writer.read_local("sample_stats", "diverging", sampled.draw)).sum()
        sampled.divergences = job.comm.allreduce(int(mine))
    if sampled.draw and not sampled.stopped_by:
        # A resumed run checks where it resumes, as the first run did (or would have, had a
        # deadline not stopped it there first): the same chunks follow, and a goal already met
        # ends the run at the same draw.
        t_goal = time.perf_counter()
        _check_goal(job, chains, sampled, writer)
        goal_seconds += time.perf_counter() - t_goal
    while sampled.draw < config.draws and not sampled.stopped_by:
        t_chunk = time.time()
        n = min(config.chunk_draws, config.draws - sampled.draw)
        if config.until_ess is not None:
            n = next_chunk(
                sampled.draw, config.chunk_draws, config.draws - sampled.draw,
                sampled.goal_stats, config.until_ess, config.until_rhat, config.tail_goal,
            )  # fmt: skip
        chains.state, chunk_positions, stats = sampler.sample(chains.state, n)
        constrained = sampler.constrain(chunk_positions)
        values = {
            ("posterior", var.name): arr
            for var, arr in zip(compiled.posterior_vars, constrained, strict=True)
        }
        for name in stat_names:
            values[("sample_stats", name)] = np.asarray(stats[name])
        _injected_fault(job.rank, sampled.draw)
        t_io = time.perf_counter()
        kept = sampled.draw
        _agreed_write(job, "writing draws", partial(writer.write_chunk, sampled.draw, values), kept)
        sampled.draw += n
        saver.save(chains.state, config.tune + sampled.draw, sampled.draw)
        io_seconds += time.perf_counter() - t_io
        local = np.full(len(chains.chain_group), sampled.draw, dtype=np.int64)
        local_divergences = int(np.asarray(stats["diverging"]).sum())
        deadline.record(time.time() - t_chunk)
        stop = local_stop(job.stop, deadline, job.shard_comm)
        gathered = job.comm.allgather((local, local_divergences, stop))
        sampled.draws_completed = np.concatenate([g[0] for g in gathered])
        sampled.divergences += sum(g[1] for g in gathered)
        # A signal after the last chunk changes nothing: the run is complete.
        if sampled.draw < config.draws:
            sampled.stopped_by = AGREED_STOPS[max(g[2] for g in gathered)]
        t_io = time.perf_counter()
        completed = partial(writer.mark_completed, sampled.draws_completed)
        _agreed_write(job, "writing draws", completed, kept)
        io_seconds += time.perf_counter() - t_io
        progress.update(SAMPLING, config.tune + sampled.draw, sampled.divergences)
        if not sampled.stopped_by:
            t_goal = time.perf_counter()
            _check_goal(job, chains, sampled, writer)
            goal_seconds += time.perf_counter() - t_goal
    job.timings["sampling"] = time.perf_counter() - t0 - io_seconds - goal_seconds
    job.timings["io"] = io_seconds
    if config.until_ess is not None:
        job.timings["until_ess_checks"] = goal_seconds
    return sampled


def _check_goal(job: Job, chains: Chains, sampled: Sampled, writer) -> None:
    """An ``--until-ess`` check at ``sampled.draw`` (once the goal is reachable at all): its
    diagnostics become ``sampled.goal_stats``, and a goal met before the cap stops the run."""
    config = job.config
    if config.until_ess is None or not goal_reachable(
        int(config.chains or 0) * sampled.draw, max(config.until_ess, config.tail_goal or 0)
    ):
        return
    sampled.goal_stats = diagnostics_of(writer, chains, job.comm, sampled.draw)
    sampled.goal_checks.append(sampled.draw)
    if (
        goal_met(sampled.goal_stats, config.until_ess, config.until_rhat, config.tail_goal)
        and sampled.draw < config.draws
    ):
        sampled.stopped_by = STOP_GOAL


def _agreed_write(job: Job, phase: str, write: Callable[[], None], draws_kept: int) -> None:
    """A write that may fail on some ranks (disk full, quota, I/O error), agreed at once: every
    rank of the job (every data shard's too) stops here with one line, before a checkpoint could
    claim the lost draws."""

    def attempt() -> None:
        injected_write_fault(job.everyone.Get_rank(), draws_kept, "draws")
        write()

    _on_every_rank(
        job.everyone,
        phase,
        attempt,
        catch=(OSError,),
        reword=lambda exc: f"{exc}; {what_is_kept(job.config, draws_kept)}",
    )


def _injected_fault(rank: int, draw: int) -> None:
    """Test hook: ``MPI_PYMC_INJECT_FAULT=RANK:DRAW`` raises on that rank from that draw on.

    Lets the test suite prove that an exception on one rank mid-sampling ends the whole job.
    """
    spec = os.environ.get("MPI_PYMC_INJECT_FAULT")
    if spec:
        fault_rank, fault_draw = (int(x) for x in spec.split(":"))
        if rank == fault_rank and draw >= fault_draw:
            raise RuntimeError(f"injected fault at draw {draw} (MPI_PYMC_INJECT_FAULT={spec})")


def diagnostics_of(writer, chains: Chains, comm, draws: int) -> dict:
    """R-hat/ESS of the first ``draws`` draws of all chains, by collectives; each rank reads
    back only its own chains."""
    from mpi_pymc.diagnostics.collective import distributed_diagnostics

    matrix = local_draws_matrix(writer, chains.compiled, chains.chain_group, draws)
    return distributed_diagnostics(matrix, comm)


def local_draws_matrix(writer, compiled, chain_group: range, draws: int) -> np.ndarray:
    """This rank's chains' first ``draws`` draws as (chains, draws, parameters), read back
    through its writer."""
    pieces = []
    for var in compiled.posterior_vars:
        data = writer.read_local("posterior", var.name, draws)
        pieces.append(np.asarray(data, dtype=np.float64).reshape(data.shape[0], data.shape[1], -1))
    return np.concatenate(pieces, axis=2)
