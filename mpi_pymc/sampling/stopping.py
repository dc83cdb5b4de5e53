"""Stopping rules besides the ``--draws`` cap: a quality goal and a deadline.

Pure decisions; the driver supplies the collective diagnostics and the clock readings, and
every rank reaches the same verdict from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Seconds kept free before a SLURM job's end time: the last chunk's checkpoint and file close.
# Shorter than any sensible `--signal` lead (SLURM sends it 0-30 s later than asked), so a job
# that asked for a warning signal gets it before this fallback would stop the run.
SLURM_MARGIN = 30.0
# A chunk is predicted to take this much longer than the slowest one so far.
CHUNK_SAFETY = 1.25
# --until-ess: a chunk ends where the last check's ESS per draw, times this, reaches the goal
# (next_chunk); at least MIN_GOAL_CHUNK draws, so a check's cost stays small beside its chunk.
PROJECTION_MARGIN = 1.02
MIN_GOAL_CHUNK = 10

# Values of the output's ``stopped_by`` attribute.
STOP_DRAWS = "draws"  # the --draws cap: a complete run
STOP_GOAL = "until_ess"  # --until-ess reached: complete, the file holds the draws taken
STOP_MAX_TIME = "max_time"  # --max-time: checkpointed, resumable
STOP_JOB_END = "job_end_time"  # the SLURM job's end time: checkpointed, resumable
STOP_SIGNAL = "signal"  # SIGTERM/SIGUSR1: checkpointed, resumable
RESUMABLE_STOPS = (STOP_MAX_TIME, STOP_JOB_END, STOP_SIGNAL)


def _goal_measures(stats: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk ESS, tail ESS and R-hat of every parameter."""
    bulk, tail, rhat = (np.asarray(stats[k], float) for k in ("ess_bulk", "ess_tail", "r_hat"))
    return bulk, tail, rhat


def _measures_of_goal(stats: dict, until_ess: int, tail_goal: int | None):
    """``(bulk, tail, rhat, tail_goal)`` with the tail goal's default (``until_ess``) applied,
    or None where a measure the goal uses is missing or NaN (a stuck parameter): not yet."""
    tail_goal = until_ess if tail_goal is None else tail_goal
    bulk, tail, rhat = _goal_measures(stats)
    values = np.concatenate([bulk, tail, rhat] if tail_goal else [bulk, rhat])
    if values.size == 0 or np.isnan(values).any():
        return None
    return bulk, tail, rhat, tail_goal


def goal_met(stats: dict, until_ess: int, until_rhat: float, tail_goal: int | None = None) -> bool:
    """Min bulk ESS at least ``until_ess``, min tail ESS at least ``tail_goal`` (default
    ``until_ess``; 0 asks nothing of it) and max R-hat at most ``until_rhat`` (a NaN in a
    measure the goal uses, e.g. a stuck parameter, means not yet)."""
    measures = _measures_of_goal(stats, until_ess, tail_goal)
    if measures is None:
        return False
    bulk, tail, rhat, tail_goal = measures
    tail_ok = not tail_goal or tail.min() >= tail_goal
    return bool(bulk.min() >= until_ess and tail_ok and rhat.max() <= until_rhat)


def goal_reachable(total_draws: int, until_ess: int) -> bool:
    """Whether ``total_draws`` draws (all chains) can have ESS ``until_ess`` at all: ArviZ's ESS
    is at most ``total * log10(total)`` (its floor on the autocorrelation time), so checks
    before then are skipped without changing where the run stops."""
    return total_draws >= 4 and total_draws * math.log10(total_draws) >= until_ess


def next_chunk(
    draw: int,
    chunk_draws: int,
    remaining: int,
    stats: dict | None,
    until_ess: int,
    until_rhat: float,
    tail_goal: int | None = None,
) -> int:
    """Draws per chain of the next chunk of a ``--until-ess`` run, after a check at ``draw``.

    ESS grows about in proportion to the draws, so when R-hat already meets its goal and ESS
    falls short, the chunk ends where the last check's ESS per draw reaches the goal (plus
    ``PROJECTION_MARGIN``), never shorter than ``MIN_GOAL_CHUNK`` nor longer than
    ``chunk_draws``: the run stops near the first draw meeting the goal, not up to a whole chunk
    past it. Without a check (``stats`` None), or while R-hat or a NaN decides, a whole chunk.
    A function of the check's numbers alone, so a resumed run (which checks again where it
    resumes) takes the same chunks and stops at the same draw.
    """
    whole = min(chunk_draws, remaining)
    measures = (
        None if stats is None or draw <= 0 else _measures_of_goal(stats, until_ess, tail_goal)
    )
    if measures is None or measures[2].max() > until_rhat:
        return whole
    bulk, tail, _, tail_goal = measures
    shortfall = until_ess / max(bulk.min(), 1e-9)
    if tail_goal:
        shortfall = max(shortfall, tail_goal / max(tail.min(), 1e-9))
    if shortfall <= 1.0:
        return whole
    projected = math.ceil(draw * shortfall * PROJECTION_MARGIN) - draw
    return min(whole, max(projected, min(MIN_GOAL_CHUNK, whole)))


def goal_progress(stats: dict) -> str:
    """``min bulk ESS 812, min tail ESS 640, max R-hat 1.004`` for progress lines."""
    bulk, tail, rhat = _goal_measures(stats)
    return (
        f"min bulk ESS {np.nanmin(bulk):,.0f}, min tail ESS {np.nanmin(tail):,.0f}, "
        f"max R-hat {np.nanmax(rhat):.3f}"
    )


@dataclass
class Deadline:
    """When the run must have stopped: ``--max-time`` after launch and/or the job's end."""

    max_time_at: float | None  # time.time() value
    job_end_at: float | None
    slowest_chunk: float = 0.0

    @classmethod
    def start(cls, launched: float, max_time: float | None, job_end: float | None) -> Deadline:
        return cls(
            max_time_at=None if max_time is None else launched + max_time,
            job_end_at=None if job_end is None else job_end - SLURM_MARGIN,
        )

    def record(self, chunk_seconds: float) -> None:
        self.slowest_chunk = max(self.slowest_chunk, chunk_seconds)

    def reason_to_stop(self, now: float) -> str | None:
        """Which deadline the next chunk would overrun, if any."""
        finish = now + CHUNK_SAFETY * self.slowest_chunk
        if self.max_time_at is not None and finish > self.max_time_at:
            return STOP_MAX_TIME
        if self.job_end_at is not None and finish > self.job_end_at:
            return STOP_JOB_END
        return None
