"""Phase 9, finish: trim, diagnose and record the run, print its summary (or how to resume), then
the post-processing pass the options ask for."""

from __future__ import annotations

import time

import numpy as np

from mpi_pymc.driver.chunks import diagnostics_of
from mpi_pymc.driver.job import Chains, Job, RunResult, Sampled
from mpi_pymc.driver.messages import resume_line, summary_lines
from mpi_pymc.sampling.stopping import (
    RESUMABLE_STOPS,
    STOP_DRAWS,
    STOP_GOAL,
)


def finish(job: Job, chains: Chains, sampled: Sampled, writer, io: str) -> RunResult:
    """Trim, diagnose and record the run; rank 0 prints the summary (or how to resume)."""
    config, draw = job.config, sampled.draw
    outcome = sampled.stopped_by or STOP_DRAWS
    summary = None
    if outcome == STOP_GOAL:
        writer.trim(draw)  # the file holds exactly the draws taken
    if config.until_ess is not None:
        writer.set_attrs({"until_ess_checks": np.asarray(sampled.goal_checks, dtype=np.int64)})
    writer.set_attrs(metric_attrs(job, chains))
    if outcome in RESUMABLE_STOPS:
        writer.set_attrs({"timings": job.timings, "stopped_by": outcome})
        lines = [resume_line(config, outcome, draw, sampled.iteration)]
    else:
        writer.set_attrs({"peak_rss_mb": job.comm.allgather(_peak_rss_mb()), "stopped_by": outcome})
        with job.timed("diagnostics"):
            summary = _diagnose(writer, chains, job.comm, config, draw, sampled.goal_stats)
        job.timings["total"] = time.perf_counter() - job.t_start
        writer.set_attrs(
            {
                "timings": job.timings,
                "divergences": sampled.divergences,
                "diagnostics": summary["json"],
            }
        )
        lines = summary_lines(config, outcome, draw, summary, sampled.divergences, io, job.timings)
    for line in lines:
        job.say(line)
    return RunResult(
        out=str(config.out),
        root_seed=chains.root_seed,
        chains=int(config.chains or 0),
        draws_completed=sampled.draws_completed,
        timings=job.timings,
        summary=summary,
        stopped_by=outcome,
    )


def metric_attrs(job: Job, chains: Chains) -> dict:
    """Which mass matrix the warmup chose (``--metric``): per chain the low-rank directions in
    use (``metric_rank``, 0 a diagonal), and in words (``metric_used``)."""
    mine = chains.sampler.metric_ranks(chains.state)
    gathered = job.comm.allgather(mine)
    if any(part is None for part in gathered):
        return {"metric_used": "diag"}
    ranks = np.concatenate(gathered)
    asked = job.config.metric
    if not ranks.max():
        used = "diag" if asked == "diag" else f"diag ({asked} kept the diagonal)"
    else:
        used = f"{'dense' if asked == 'dense' else 'low_rank'} (rank {ranks.min()}-{ranks.max()})"
    return {"metric_used": used, "metric_rank": ranks}


def _diagnose(writer, chains: Chains, comm, config, draws: int, known=None) -> dict:
    """The summary of a finished run; ``known`` is a last --until-ess check at ``draws``."""
    from mpi_pymc.diagnostics.summary import convergence_warnings, summary_table

    stats = known if known is not None else diagnostics_of(writer, chains, comm, draws)
    names = [c[0] for c in _flat_names(chains.compiled)]
    table = summary_table(names, stats)
    warns = convergence_warnings(stats, config.chains, names)
    as_json = {
        "parameters": names,
        **{k: np.asarray(v).tolist() for k, v in stats.items() if isinstance(v, np.ndarray)},
    }
    return {"table": table, "warnings": warns, "json": as_json, "stats": stats, "names": names}


def _flat_names(compiled) -> list[tuple[str, str, tuple]]:
    """(column label, variable, index) for every scalar of every posterior variable."""
    columns = []
    for var in compiled.posterior_vars:
        if not var.shape:
            columns.append((var.name, var.name, ()))
            continue
        for index in np.ndindex(*var.shape):
            labels = [str(compiled.coords[d][i]) for d, i in zip(var.dims, index, strict=True)]
            columns.append((f"{var.name}[{', '.join(labels)}]", var.name, index))
    return columns


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def add_groups(job: Job, model) -> None:
    """``--log-likelihood``/``--posterior-predictive``: the post-processing pass on the same
    ranks, over the complete file (the output lock is still held)."""
    from mpi_pymc.postprocessing.run import postprocess
    from mpi_pymc.postprocessing.settings import PostprocessConfig

    config = job.config
    if not (config.log_likelihood or config.posterior_predictive):
        return
    postprocess(
        PostprocessConfig(
            out=str(config.out),
            log_likelihood=config.log_likelihood,
            posterior_predictive=config.posterior_predictive,
            gpus_per_rank=config.gpus_per_rank,
        ),
        comm=job.comm,
        echo=job.echo,
        model=model,
    )
