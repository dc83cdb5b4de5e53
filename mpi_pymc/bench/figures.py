"""The benchmark's arithmetic: scaling, ESS per second / rank-hour / node-hour, baseline ratios
and the time-to-answer goal. Pure functions of the records; no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mpi_pymc.core.config import DEFAULT_UNTIL_RHAT

GOAL_RHAT = DEFAULT_UNTIL_RHAT  # what mpi_pymc run --until-ess holds a goal to


def scaling(units: Sequence[float], seconds: Sequence[float], mode: str) -> list[dict]:
    """Speed-up, ideal speed-up and efficiency of each point against the smallest one.

    ``units`` are ranks (weak, strong) or chains (chains mode); ``seconds`` the time to compare.
    Strong scaling (fixed total work): speed-up = U0·T0/T, ideal = U, efficiency = speed-up/U,
    which is T1/(N·TN) when the smallest point has one rank. Weak scaling and the chains sweep
    (work grows with U): speed-up = U·T0/T (scaled speed-up), ideal = U, efficiency = T0/T.
    For the chains sweep U is divided by the smallest chain count, so the ideal starts at 1.
    """
    if mode not in ("weak", "strong", "chains"):
        raise ValueError(f"no scaling figures for mode '{mode}'")
    if len(units) != len(seconds):
        raise ValueError("units and seconds differ in length")
    if not units:
        return []
    reference = min(range(len(units)), key=lambda i: units[i])
    u0, t0 = float(units[reference]), float(seconds[reference])
    out = []
    for u, t in zip(units, seconds, strict=True):
        u, t = float(u), float(t)
        if mode == "chains":
            u, base = u / u0, 1.0
        else:
            base = u0
        if not (t > 0 and t0 > 0):
            out.append({"speedup": None, "ideal_speedup": u, "efficiency": None})
            continue
        speedup = base * t0 / t if mode == "strong" else u * t0 / t
        out.append({"speedup": speedup, "ideal_speedup": u, "efficiency": speedup / u})
    return out


def ess_per_second(min_ess_bulk: float | None, wall_seconds: float | None) -> float | None:
    if min_ess_bulk is None or not wall_seconds or wall_seconds <= 0:
        return None
    return min_ess_bulk / wall_seconds


def ess_per_rank_hour(min_ess_bulk: float | None, wall_seconds: float | None, ranks: int):
    """Min bulk ESS bought by one rank running for one hour (whole run, start-up included)."""
    per_second = ess_per_second(min_ess_bulk, wall_seconds)
    return None if per_second is None else per_second * 3600.0 / ranks


def ess_per_node_hour(per_rank_hour: float | None, ranks_per_node: int | None):
    """Per rank-hour × ranks per node: a node filled with such ranks, for one hour."""
    if per_rank_hour is None or not ranks_per_node:
        return None
    return per_rank_hour * ranks_per_node


def _finite(values) -> list[float]:
    out = []
    for v in values or []:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def diagnostics_extremes(diagnostics: dict) -> dict:
    """Min bulk/tail ESS and max R-hat over every parameter (NaN of constant ones skipped)."""
    bulk, tail, rhat = (_finite(diagnostics.get(k)) for k in ("ess_bulk", "ess_tail", "r_hat"))
    return {
        "min_ess_bulk": min(bulk) if bulk else None,
        "min_ess_tail": min(tail) if tail else None,
        "max_r_hat": max(rhat) if rhat else None,
        "parameters": len(diagnostics.get("parameters") or []),
    }


def point_figures(
    *,
    ranks: int,
    chains: int,
    draws: int,
    wall_seconds: float,
    timings: dict,
    diagnostics: dict,
    ranks_per_node: int | None,
) -> dict:
    """The derived figures of one scaling point, from what its output file recorded."""
    extremes = diagnostics_extremes(diagnostics)
    sampling = timings.get("sampling")
    per_rank_hour = ess_per_rank_hour(extremes["min_ess_bulk"], wall_seconds, ranks)
    return {
        **extremes,
        "draws_per_second": chains * draws / sampling if sampling else None,
        "draws_per_wall_second": chains * draws / wall_seconds if wall_seconds else None,
        "min_ess_bulk_per_second": ess_per_second(extremes["min_ess_bulk"], wall_seconds),
        "min_ess_bulk_per_sampling_second": ess_per_second(extremes["min_ess_bulk"], sampling),
        "ess_per_rank_hour": per_rank_hour,
        "ess_per_node_hour": ess_per_node_hour(per_rank_hour, ranks_per_node),
    }


def add_scaling(points: list[dict], mode: str) -> None:
    """Attach speed-up and efficiency (sampling, total, wall) to every successful point."""
    ok = [p for p in points if p.get("ok")]
    unit = "chains" if mode == "chains" else "ranks"
    units = [p[unit] for p in ok]
    for kind, get in (
        ("sampling", lambda p: p["timings"].get("sampling")),
        ("total", lambda p: p["timings"].get("total")),
        ("wall", lambda p: p["wall_seconds"]),
    ):
        seconds = [get(p) or 0.0 for p in ok]
        for p, fig in zip(ok, scaling(units, seconds, mode), strict=True):
            p[f"speedup_{kind}"] = fig["speedup"]
            p[f"efficiency_{kind}"] = fig["efficiency"]
            p["ideal_speedup"] = fig["ideal_speedup"]


def baseline_ratios(mpi_rows: list[dict], baseline_rows: list[dict]) -> list[dict]:
    """mpi_pymc's min-bulk-ESS per wall second divided by each baseline's."""
    out = []
    for m in mpi_rows:
        for b in baseline_rows:
            mine, theirs = m.get("min_ess_bulk_per_second"), b.get("min_ess_bulk_per_second")
            out.append(
                {
                    "mpi_pymc": m["label"],
                    "baseline": b["label"],
                    "ess_per_second_ratio": mine / theirs if mine and theirs else None,
                    "wall_seconds_ratio": (
                        b["wall_seconds"] / m["wall_seconds"]
                        if m.get("wall_seconds") and b.get("wall_seconds") and b.get("ok")
                        else None
                    ),
                }
            )
    return out


def meets_goal(
    record: dict, goal: int, rhat: float = GOAL_RHAT, tail_goal: int | None = None
) -> bool:
    """The rule ``mpi_pymc run --until-ess`` stops by (:func:`mpi_pymc.sampling.stopping.goal_met`),
    judged on a record's min bulk and tail ESS and max R-hat (a missing one counts as not met)."""
    # Here, not at the top: the CLI's parsers import this module, and `jobscript --help` runs
    # where only the wheel is installed (tests/system/test_packaging.py); stopping needs numpy.
    from mpi_pymc.sampling.stopping import goal_met

    keys = {"ess_bulk": "min_ess_bulk", "ess_tail": "min_ess_tail", "r_hat": "max_r_hat"}
    stats = {k: [math.nan if record.get(v) is None else float(record[v])] for k, v in keys.items()}
    return bool(record.get("ok")) and goal_met(stats, goal, rhat, tail_goal)


def answer_comparisons(points: list[dict], baselines: list[dict]) -> list[dict]:
    """Per goal and baseline: mpi_pymc's launch-to-answer wall time over the baseline's, and
    whether each side's file meets the goal (the baseline runs at PyMC's defaults, once)."""
    out = []
    for point in points:
        goal = point["goal"]
        tail_goal = point.get("tail_goal", goal)
        for b in baselines:
            mine, theirs = point.get("wall_seconds"), b.get("wall_seconds")
            fraction = (
                mine / theirs if point.get("ok") and b.get("ok") and mine and theirs else None
            )
            out.append(
                {
                    "goal": goal,
                    "mpi_pymc": point["label"],
                    "baseline": b["label"],
                    "tail_goal": tail_goal,
                    "mpi_pymc_meets_goal": meets_goal(point, goal, tail_goal=tail_goal),
                    "baseline_meets_goal": meets_goal(b, goal, tail_goal=tail_goal),
                    "wall_fraction": fraction,
                }
            )
    return out
