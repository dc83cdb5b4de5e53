"""What rank 0 tells the user: the start line, the resume line and the finished run's summary lines
(pure)."""

from __future__ import annotations

from mpi_pymc import __version__
from mpi_pymc.core.config import RunConfig
from mpi_pymc.diagnostics.summary import divergence_warning, pymc_warnings
from mpi_pymc.sampling.stopping import (
    STOP_GOAL,
    STOP_JOB_END,
    STOP_MAX_TIME,
    STOP_SIGNAL,
    goal_progress,
)


def start_line(config: RunConfig, size: int, resuming: bool) -> str:
    """Rank 0's first line: what runs where, with which settings."""
    what = "resuming" if resuming else "sampling"
    model = config.model_label or config.model_path or "the model"
    return (
        f"mpi_pymc {__version__}: {what} {model} on {size} rank(s), "
        f"{config.chains} chains ({config.chain_method}, {config.sampler}, "
        f"{config.precision}), seed {config.seed}, {config.tune} tune + {config.draws} draws"
    )


def resume_line(config: RunConfig, outcome: str, draw: int, iteration: int) -> str:
    """What a run stopped early with a checkpoint tells its user."""
    return (
        f"stopped by {_STOP_WORDS[outcome]} after {draw} of {config.draws} draws (warmup "
        f"{min(iteration, config.tune)}/{config.tune}); checkpoint written. Continue "
        f"with the same command plus --resume (output {config.out})"
    )


def summary_lines(
    config: RunConfig, outcome: str, draw: int, summary: dict, divergences: int, io: str, timings
) -> list[str]:
    """The finished run's report: table, warnings, the goal's verdict, where the draws are; with
    ``--summary warnings`` (sample()) pm.sample's warnings and its closing line instead."""
    if config.summary == "warnings":
        lines = pymc_warnings(summary["stats"], int(config.chains or 1), draw, divergences)
    else:
        chains = int(config.chains or 1)
        warned = [*divergence_warning(divergences, chains * draw, config.target_accept),
                  *summary["warnings"]]  # fmt: skip
        lines = [summary["table"], *(f"warning: {line}" for line in warned)]
    tail = config.tail_goal
    tail_part = (
        "" if tail == config.until_ess else ("no tail ESS, " if not tail else f"tail ESS {tail}, ")
    )
    goal = f"--until-ess {config.until_ess} ({tail_part}R-hat <= {config.until_rhat})"
    if outcome == STOP_GOAL:
        lines.append(
            f"reached {goal} after {draw} of at most {config.draws} draws per chain: "
            f"{goal_progress(summary['stats'])}"
        )
    elif config.until_ess is not None:
        lines.append(
            f"warning: {goal} not reached within --draws {config.draws}: "
            f"{goal_progress(summary['stats'])}; resume is not possible for a complete run, "
            "start a longer one"
        )
    if config.summary == "warnings":
        chains, tune = int(config.chains or 1), config.tune
        lines.append(
            f"Sampling {chains} chain{'s' if chains > 1 else ''} for {tune:_d} tune and "
            f"{draw:_d} draw iterations ({tune * chains:_d} + {draw * chains:_d} draws total) "
            f"took {timings['total']:.0f} seconds; the draws are in {config.out}"
        )
        return lines
    lines.append(
        f"{divergences} divergences. Wrote {config.chains} chains x {draw} "
        f"draws to {config.out} ({io}); open with arviz.from_netcdf('{config.out}'). "
        f"Wall time {timings['total']:.1f}s"
    )
    return lines


_STOP_WORDS = {
    STOP_SIGNAL: "a signal",
    STOP_MAX_TIME: "--max-time",
    STOP_JOB_END: "the SLURM job's end time",
}
