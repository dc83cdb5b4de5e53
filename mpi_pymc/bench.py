"""Allocation benchmarks: ``python -m mpi_pymc bench weak|strong|chains|baseline|answer MODEL.py``.

Each point launches a real ``mpi_pymc run`` (under ``mpirun`` or, inside a SLURM allocation,
``srun``), times the whole subprocess and reads the output file's root attributes (``timings``,
``diagnostics``, ``versions``...). From those it derives the figures an allocation proposal needs:
draws/s, min bulk ESS per wall second (start-up and compile included), ESS per rank-hour and per
node-hour, max R-hat and parallel efficiency. ``baseline`` runs what PyMC users run today
(``pm.sample`` with its default sampler, numpyro vectorized and parallel, nutpie) on the same
machine and model and reports how mpi_pymc compares. ``answer`` times launch-to-answer: an
``mpi_pymc run --until-ess N`` for each goal N against PyMC's numpyro path at its defaults.

Outputs into ``--outdir``: ``results.json``, ``results.md`` (a table to paste) and PNG plots.
The arithmetic (:func:`scaling`, :func:`ess_per_rank_hour`, :func:`render_markdown`...) is pure;
everything that launches or reads files is at the bottom.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpi_pymc.config import DEFAULT_UNTIL_RHAT

MODES = ("weak", "strong", "chains", "baseline", "answer")
LAUNCHERS = ("auto", "mpirun", "srun", "none")
BASELINE_METHODS = ("pymc", "numpyro_vectorized", "numpyro_parallel", "nutpie", "nutpie_jax")
BASELINE_TITLES = {
    "pymc": "pm.sample() (PyMC NUTS, cores=N)",
    "numpyro_vectorized": 'pm.sample(nuts_sampler="numpyro", chain_method="vectorized")',
    "numpyro_parallel": 'pm.sample(nuts_sampler="numpyro", chain_method="parallel")',
    "nutpie": 'pm.sample(nuts_sampler="nutpie")',
    "nutpie_jax": 'pm.sample(nuts_sampler="nutpie", nuts_sampler_kwargs={"backend": "jax", '
    '"gradient_backend": "jax"})',
}
TIMING_KEYS = (
    "startup",
    "load_model",
    "compile",
    "init",
    "jit",
    "warmup",
    "sampling",
    "io",
    "diagnostics",
    "total",
)
DEFAULT_SEED = 20261127
# answer mode: the goals, the draws cap per chain, and what PyMC runs when not told otherwise.
DEFAULT_GOALS = (1000, 10000)
ANSWER_DRAWS_CAP = 20000
PYMC_DEFAULT_TUNE = PYMC_DEFAULT_DRAWS = 1000
GOAL_RHAT = DEFAULT_UNTIL_RHAT  # what mpi_pymc run --until-ess holds a goal to
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BASELINE_SCRIPT = PACKAGE_ROOT / "benchmarks" / "baseline_pymc.py"


class BenchError(Exception):
    """A mistake in the benchmark settings; reported as one line."""


# ---------------------------------------------------------------------------------------------
# Pure arithmetic


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


def meets_goal(record: dict, goal: int, rhat: float = GOAL_RHAT) -> bool:
    """Min bulk and tail ESS at least ``goal`` and max R-hat at most ``rhat``."""
    values = [record.get(k) for k in ("min_ess_bulk", "min_ess_tail", "max_r_hat")]
    if not record.get("ok") or any(v is None for v in values):
        return False
    bulk, tail, worst = (float(v) for v in values)  # type: ignore[arg-type]
    return bulk >= goal and tail >= goal and worst <= rhat


def answer_comparisons(points: list[dict], baselines: list[dict]) -> list[dict]:
    """Per goal and baseline: mpi_pymc's launch-to-answer wall time over the baseline's, and
    whether each side's file meets the goal (the baseline runs at PyMC's defaults, once)."""
    out = []
    for point in points:
        goal = point["goal"]
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
                    "mpi_pymc_meets_goal": meets_goal(point, goal),
                    "baseline_meets_goal": meets_goal(b, goal),
                    "wall_fraction": fraction,
                }
            )
    return out


def parse_int_list(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; every entry a positive integer."""
    values = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if not piece.isdigit() or int(piece) <= 0:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of positive integers, got '{text}'"
            )
        values.append(int(piece))
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got '{text}'")
    return values


def powers_of_two_up_to(limit: int) -> list[int]:
    out, n = [], 1
    while n <= max(1, limit):
        out.append(n)
        n *= 2
    return out


def format_number(value, kind: str = "number") -> str:
    """Compact, paste-able table cells; missing values become an em dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    if kind == "percent":
        return f"{100 * value:.0f}%"
    if kind == "ratio":
        return f"{value:.2f}×"
    if kind == "rhat":
        return f"{value:.3f}"
    if kind == "int":
        return f"{value:,.0f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cells(row: list[str]) -> str:
        # Error messages carry rank prefixes like "r1 | ..."; a bare pipe would split the cell.
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |"

    lines = [cells(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [cells(row) for row in rows]
    return "\n".join(lines)


def _scaling_rows(points: list[dict], mode: str) -> tuple[list[str], list[list[str]]]:
    f = format_number
    if mode == "chains":
        header = ["chains", "wall s", "compile s", "jit s", "warmup s", "sampling s", "draws/s",
                  "min bulk ESS", "ESS/s", "ESS/rank-h", "max R-hat", "throughput gain",
                  "ideal", "efficiency"]  # fmt: skip
    else:
        header = ["ranks", "chains", "wall s", "compile s", "jit s", "warmup s", "sampling s",
                  "draws/s",
                  "min bulk ESS", "ESS/s", "ESS/rank-h", "ESS/node-h", "max R-hat",
                  "speed-up (sampling)", "ideal", "efficiency (sampling)",
                  "efficiency (total)"]  # fmt: skip
    rows = []
    for p in points:
        if not p.get("ok"):
            lead = (
                [str(p.get("chains"))] if mode == "chains" else [str(p["ranks"]), str(p["chains"])]
            )
            rows.append(
                lead
                + [f"failed: {p.get('error', '?')[:60]}"]
                + [""] * (len(header) - len(lead) - 1)
            )
            continue
        t = p["timings"]
        common = [
            f(p["wall_seconds"]), f(t.get("compile")), f(t.get("jit")), f(t.get("warmup")),
            f(t.get("sampling")),
            f(p["draws_per_second"]), f(p["min_ess_bulk"], "int"),
            f(p["min_ess_bulk_per_second"]), f(p["ess_per_rank_hour"], "int"),
        ]  # fmt: skip
        if mode == "chains":
            rows.append(
                [
                    str(p["chains"]),
                    *common,
                    f(p["max_r_hat"], "rhat"),
                    f(p.get("speedup_sampling")),
                    f(p.get("ideal_speedup")),
                    f(p.get("efficiency_sampling"), "percent"),
                ]  # fmt: skip
            )
        else:
            rows.append(
                [
                    str(p["ranks"]),
                    str(p["chains"]),
                    *common,
                    f(p["ess_per_node_hour"], "int"),
                    f(p["max_r_hat"], "rhat"),
                    f(p.get("speedup_sampling")),
                    f(p.get("ideal_speedup")),
                    f(p.get("efficiency_sampling"), "percent"),
                    f(p.get("efficiency_total"), "percent"),
                ]  # fmt: skip
            )
    return header, rows


def _baseline_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    f = format_number
    header = ["sampler", "ranks", "chains", "tune+draws", "wall s", "sampler s", "min bulk ESS",
              "ESS/s (wall)", "max R-hat", "divergences"]  # fmt: skip
    rows = []
    for b in results.get("baselines", []):
        title = BASELINE_TITLES.get(b["method"], b["method"])
        if not b.get("ok"):
            why = b.get("skipped") or b.get("error") or "failed"
            rows.append([title, "1", str(b.get("chains")), "", "", "", "", "", "", why[:80]])
            continue
        rows.append(
            [
                title,
                "1",
                str(b["chains"]),
                f"{b['tune']}+{b['draws']}",
                f(b["wall_seconds"]),
                f(b.get("sample_seconds")),
                f(b["min_ess_bulk"], "int"),
                f(b["min_ess_bulk_per_second"]),
                f(b["max_r_hat"], "rhat"),
                str(b.get("divergences", "—")),
            ]  # fmt: skip
        )
    for p in results.get("points", []):
        if not p.get("ok"):
            rows.append([f"mpi_pymc ({p['label']})", str(p["ranks"]), str(p["chains"]), "", "",
                         "", "", "", "", f"failed: {p.get('error', '?')[:60]}"])  # fmt: skip
            continue
        launched = "srun" if p.get("launcher") == "srun" else "mpirun"
        sampler = (p.get("settings") or {}).get("sampler", "")
        rows.append(
            [
                f"mpi_pymc ({launched} -n {p['ranks']}" + (f", {sampler})" if sampler else ")"),
                str(p["ranks"]),
                str(p["chains"]),
                f"{p['tune']}+{p['draws']}",
                f(p["wall_seconds"]),
                f(p["timings"].get("total")),
                f(p["min_ess_bulk"], "int"),
                f(p["min_ess_bulk_per_second"]),
                f(p["max_r_hat"], "rhat"),
                str(p.get("divergences", "—")),
            ]  # fmt: skip
        )
    return header, rows


def _answer_table(results: dict) -> str:
    f = format_number
    baselines = {b["label"]: b for b in results.get("baselines", [])}
    header = ["goal (min ESS)", "mpi_pymc run", "time to answer s", "draws/chain",
              "min bulk ESS", "min tail ESS", "max R-hat", "baseline", "baseline wall s",
              "baseline min bulk / tail ESS", "baseline meets goal",
              "mpi_pymc ÷ baseline wall"]  # fmt: skip
    rows = []
    points = {p["label"]: p for p in results.get("points", [])}
    for c in results.get("comparisons", []):
        p, b = points[c["mpi_pymc"]], baselines[c["baseline"]]
        if not p.get("ok"):
            mine = ["failed: " + str(p.get("error", "?"))[:50], "", "", "", ""]
        else:
            taken = f"{p['draws']} ({p.get('stopped_by', '?')})"
            mine = [f(p["wall_seconds"]), taken, f(p["min_ess_bulk"], "int"),
                    f(p.get("min_ess_tail"), "int"), f(p["max_r_hat"], "rhat")]  # fmt: skip
            if not c["mpi_pymc_meets_goal"]:
                mine[0] += " (goal not met)"
        theirs = (
            [f(b["wall_seconds"]), f"{f(b['min_ess_bulk'], 'int')} / "
             f"{f(b.get('min_ess_tail'), 'int')}", "yes" if c["baseline_meets_goal"] else "no"]
            if b.get("ok") else ["failed", "", ""]
        )  # fmt: skip
        rows.append([f"{c['goal']:,}", p["label"], *mine, b.get("title", b["label"]), *theirs,
                     f(c["wall_fraction"], "ratio")])  # fmt: skip
    return _table(header, rows)


def render_markdown(results: dict) -> str:
    """The results as markdown an allocation proposal can paste."""
    mode = results["mode"]
    settings = results.get("settings", {})
    machine = results.get("machine", {})
    gpus = machine.get("gpus") or []
    lines = [
        f"## mpi_pymc {mode} benchmark",
        "",
        f"- Model: `{results.get('model')}`"
        + (
            f" with {_env_text(results.get('environment', {}))}"
            if results.get("environment")
            else ""
        ),  # fmt: skip
        f"- Settings: {settings.get('tune')} tune + {settings.get('draws')} draws per chain, "
        f"{settings.get('precision')}, sampler {settings.get('sampler')}, "
        f"{settings.get('chain_method')} chains, seed {settings.get('seed')}"
        + (f", JAX compilation cache {settings['jax_cache']}" if settings.get("jax_cache") else "")
        + (
            f", {settings['cores_per_rank']} core(s) per rank (taskset)"
            if settings.get("cores_per_rank")
            else ""
        ),
        f"- Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores"
        + (f", GPU: {', '.join(g.get('name', '?') for g in gpus)}" if gpus else ", no GPU")
        + f"; MPI: {machine.get('mpi_library') or '?'}; launcher: {results.get('launcher')}",
        f"- Versions: {_versions_text(results.get('versions', {}))}",
        f"- Ranks per node for ESS/node-h: {results.get('ranks_per_node')} "
        f"({results.get('ranks_per_node_source')})",
        f"- Run {results.get('created_at')} on {machine.get('hostname', '?')}",
        "",
    ]
    if mode == "answer":
        lines += [_answer_table(results), ""]
    elif mode == "baseline":
        header, rows = _baseline_rows(results)
        lines += [_table(header, rows), ""]
        ratios = results.get("ratios", [])
        if ratios:
            baselines = list(dict.fromkeys(r["baseline"] for r in ratios))
            by_run: dict[str, dict] = {}
            for r in ratios:
                by_run.setdefault(r["mpi_pymc"], {})[r["baseline"]] = r["ess_per_second_ratio"]
            lines += [
                "mpi_pymc min-bulk-ESS per wall second ÷ each baseline's (above 1: mpi_pymc "
                "is better):",
                "",
                _table(
                    ["mpi_pymc run", *baselines],
                    [
                        [run, *(format_number(v.get(b), "ratio") for b in baselines)]
                        for run, v in by_run.items()
                    ],
                ),
                "",
            ]
    else:
        header, rows = _scaling_rows(results.get("points", []), mode)
        lines += [_table(header, rows), ""]
    lines += [
        "Wall s: the whole launched process (launcher, imports, compile, warmup, sampling, "
        "writing, diagnostics). ESS/s: min bulk ESS over all parameters per wall second. "
        "ESS/rank-h: min bulk ESS per rank-hour of that wall time; ESS/node-h = ESS/rank-h × "
        "ranks per node. draws/s: chains × draws / sampling seconds. "
        + {
            "weak": "Weak scaling: fixed chains per rank; efficiency = T1/TN.",
            "strong": "Strong scaling: fixed total chains; efficiency = T1/(N·TN).",
            "chains": "Chains sweep on one rank: throughput gain = (C/C0)·T0/T, ideal C/C0.",
            "baseline": "Same machine, model, chains, tune, draws and precision on every row.",
            "answer": "Time to answer: wall time from launch to a file whose min bulk and tail "
            f"ESS reach the goal with max R-hat <= {GOAL_RHAT} (mpi_pymc run --until-ess, "
            "--draws as the cap), against the baseline's whole default run, which may or may "
            "not reach the goal. Fraction below 1: mpi_pymc answers sooner.",
        }[mode],
        "",
    ]
    return "\n".join(lines)


def _env_text(environment: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in environment.items())


def _versions_text(versions: dict) -> str:
    keys = ("python", "mpi_pymc", "pymc", "jax", "numpyro", "nutpie", "mpi4py", "h5py")
    return ", ".join(f"{k} {versions[k]}" for k in keys if k in versions) or "?"


def clean_json(value):
    """NaN and infinities become null so results.json is strict JSON; NUL bytes are dropped
    (MPI libraries' version strings can end in one)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Machine facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _command_first_line(cmd: list[str], timeout: float = 20) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def gpu_facts() -> list[dict]:
    """Name, memory and driver of each GPU nvidia-smi lists ([] without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=index,name,memory.total,driver_version"
    try:
        proc = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("index", "name", "memory", "driver"), parts, strict=True)))
    return gpus


def machine_facts(launcher: list[str] | None = None) -> dict:
    from mpi_pymc.topology import usable_cores

    cores_available = usable_cores()
    facts = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": cores_available,
        "memory_gib": _memory_gib(),
        "gpus": gpu_facts(),
        "launcher_version": (_command_first_line([launcher[0], "--version"]) if launcher else None),
        "slurm": {
            k: os.environ[k]
            for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NNODES", "SLURM_CLUSTER_NAME")
            if k in os.environ
        },
    }
    # The MPI library is read from the runs' output files: initialising MPI here (a singleton)
    # would leak its environment into the launched jobs.
    facts["mpi_library"] = None
    return facts


def recorded_environment(extra: dict[str, str]) -> dict[str, str]:
    """Environment that changes the model or the machine's behaviour, for the record."""
    names = ("CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "OMP_NUM_THREADS", "JAX_PLATFORMS")
    found = {k: v for k, v in os.environ.items() if k.startswith("MPI_PYMC_") or k in names}
    found.update(extra)
    return dict(sorted(found.items()))


def default_ranks_per_node(gpus_per_rank: int | None) -> tuple[int, str]:
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE")
    if per_node:
        match = re.match(r"\d+", per_node)
        if match:
            return int(match.group()), "SLURM tasks per node"
    gpus = gpu_facts()
    if gpus and gpus_per_rank != 0:
        return max(1, len(gpus) // (gpus_per_rank or 1)), "GPUs on this node / GPUs per rank"
    return os.cpu_count() or 1, "cores on this node (one rank per core)"


# ---------------------------------------------------------------------------------------------
# Launching runs


def choose_launcher(requested: str) -> str:
    if requested != "auto":
        return requested
    return "srun" if os.environ.get("SLURM_JOB_ID") else "mpirun"


def launcher_prefix(launcher: str, ranks: int, extra: Sequence[str] = ()) -> list[str]:
    """``mpirun -n R`` / ``srun -n R`` (plus the user's launcher arguments); [] for ``none``."""
    if launcher == "none":
        if ranks != 1:
            raise BenchError(f"--launcher none runs one rank only, but {ranks} ranks were asked")
        return []
    if launcher == "srun":
        found = shutil.which("srun")
        if found is None:
            raise BenchError("--launcher srun but no srun on PATH: run inside a SLURM job")
        return [found, "-n", str(ranks), *extra]
    from mpi_pymc.launch import find_mpirun

    try:
        return [find_mpirun(), "-n", str(ranks), *extra]
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None


def subprocess_env(launcher: str, extra: dict[str, str]) -> dict[str, str]:
    from mpi_pymc.launch import local_mpi_env

    env = local_mpi_env() if launcher == "mpirun" else dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def read_output_attrs(path: str) -> dict:
    """Root attributes of an mpi_pymc output file, JSON strings decoded."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            elif hasattr(value, "tolist"):
                value = value.tolist()
            out[key] = value
    return out


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_error_line(log: Path) -> str:
    text = _tail(log, 60).splitlines()
    for line in reversed(text):
        if "error" in line.lower() or "Error" in line:
            return line.strip()
    return text[-1].strip() if text else "no output"


def _first_cores(count: int) -> list[int]:
    """The first ``count`` cores this process may use (all of them when it has fewer)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return allowed[:count]


def run_point(
    *,
    label: str,
    model: str,
    ranks: int,
    chains: int,
    run_options: list[str],
    launcher: str,
    launcher_args: Sequence[str],
    workdir: Path,
    timeout: float,
    env_extra: dict[str, str],
    ranks_per_node: int | None,
    keep_output: bool,
    python: str = sys.executable,
    cold_cache: bool = True,
    cores_per_rank: int | None = None,
) -> dict:
    """Launch one ``mpi_pymc run`` and turn its output file into one benchmark record.

    ``cold_cache``: the run gets an empty JAX compilation cache of its own, so its wall time
    includes compiling as a first run does (PyMC's samplers keep no cache between runs either).
    ``cores_per_rank``: the job runs inside the first ``ranks x cores_per_rank`` cores of this
    machine (``taskset``), so every point of a scaling series gets the same cores per rank.
    """
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    out = workdir / "runs" / f"{label}.h5"
    log = workdir / "logs" / f"{label}.log"
    cpus = _first_cores(ranks * cores_per_rank) if cores_per_rank else []
    cmd = [
        *(["taskset", "-c", ",".join(map(str, cpus))] if cpus else []),
        *launcher_prefix(launcher, ranks, launcher_args),
        python, "-m", "mpi_pymc", "run", model, "--chains", str(chains), "--out", str(out),
        "--overwrite", "--no-progress", *run_options,
    ]  # fmt: skip
    record: dict = {
        "label": label,
        "ranks": ranks,
        "chains": chains,
        "chains_per_rank": chains / ranks,
        "launcher": launcher,
        "command": cmd,
        "log": str(log),
        "jax_cache": "cold" if cold_cache else "warm (the user's cache)",
        "ok": False,
    }
    env = dict(env_extra)
    cache = workdir / "jax-cache" / label
    if cold_cache:
        shutil.rmtree(cache, ignore_errors=True)
        env["MPI_PYMC_JAX_CACHE"] = str(cache)
    start = time.perf_counter()
    try:
        with open(log, "w") as handle:
            proc = subprocess.run(
                cmd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=subprocess_env(launcher, env),
                timeout=timeout,
                check=False,
            )
        record["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        record["wall_seconds"] = time.perf_counter() - start
        record["error"] = f"timed out after {timeout:.0f}s"
        return record
    finally:
        if cold_cache:
            shutil.rmtree(cache, ignore_errors=True)
    record["wall_seconds"] = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        record["error"] = f"exit {proc.returncode}: {_last_error_line(log)}"
        return record
    try:
        attrs = read_output_attrs(str(out))
    except OSError as exc:
        record["error"] = f"cannot read {out}: {exc}"
        return record
    timings = attrs.get("timings") or {}
    diagnostics = attrs.get("diagnostics") or {}
    draws = int(attrs.get("draws", 0))
    if attrs.get("draws_completed"):  # --until-ess: the draws taken, not the cap
        draws = int(min(attrs["draws_completed"]))
    record.update(
        ok=bool(timings) and bool(diagnostics),
        chains=int(attrs.get("chains", chains)),
        ranks=int(attrs.get("ranks", ranks)),
        draws=draws,
        tune=int(attrs.get("tune", 0)),
        # The known phases in order (None where this version of run does not time one), then
        # any phase added later.
        timings={**{k: timings.get(k) for k in TIMING_KEYS}, **timings},
        # Time inside the run that no phase claims (output set-up, waits between phases).
        unaccounted_seconds=(
            timings["total"] - sum(v or 0.0 for k, v in timings.items() if k != "total")
            if timings.get("total") is not None
            else None
        ),
        divergences=attrs.get("divergences"),
        stopped_by=attrs.get("stopped_by"),
        io=attrs.get("io"),
        binding=attrs.get("binding"),
        versions=attrs.get("versions"),
        settings=attrs.get("settings"),
        diagnostics=diagnostics,
    )
    if not record["ok"]:
        record["error"] = "output file lacks timings or diagnostics (run did not finish)"
        return record
    record.update(
        point_figures(
            ranks=record["ranks"],
            chains=record["chains"],
            draws=draws,
            wall_seconds=record["wall_seconds"],
            timings=timings,
            diagnostics=diagnostics,
            ranks_per_node=ranks_per_node,
        )
    )
    if keep_output:
        record["output"] = str(out)
    else:
        from mpi_pymc.storage import remove_output

        remove_output(str(out))
        for leftover in out.parent.glob(f"{out.name}.ckpt*"):
            if leftover.is_file():
                leftover.unlink()
    return record


def run_baseline(
    *,
    method: str,
    model: str,
    chains: int,
    tune: int,
    draws: int,
    seed: int,
    cores: int,
    workdir: Path,
    timeout: float,
    env_extra: dict[str, str],
    script: Path = BASELINE_SCRIPT,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
) -> dict:
    """One PyMC sampler in its own process, timed wall-clock (imports and compile included)."""
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    log = workdir / "logs" / f"baseline-{method}.log"
    cmd = [
        python, str(script), model, "--method", method, "--chains", str(chains), "--tune",
        str(tune), "--draws", str(draws), "--seed", str(seed), "--cores", str(cores),
        *extra_args,
    ]  # fmt: skip
    record: dict = {
        "label": method,
        "method": method,
        "title": BASELINE_TITLES.get(method, method),
        "chains": chains,
        "tune": tune,
        "draws": draws,
        "command": cmd,
        "log": str(log),
        "ok": False,
    }
    if not script.exists():
        record["error"] = f"baseline script {script} not found (it lives in the repository)"
        return record
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=subprocess_env("none", env_extra),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        record["wall_seconds"] = time.perf_counter() - start
        record["error"] = f"timed out after {timeout:.0f}s"
        log.write_text(_text(exc.stdout) + _text(exc.stderr))
        return record
    record["wall_seconds"] = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    reported = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                reported = json.loads(line)
                break
            except ValueError:
                continue
    if reported is None:
        record["error"] = f"exit {proc.returncode}: {_last_error_line(log)}"
        return record
    record.update({k: v for k, v in reported.items() if k not in ("method", "chains")})
    record["returncode"] = proc.returncode
    record["ok"] = bool(reported.get("ok")) and proc.returncode == 0
    if record["ok"]:
        record["min_ess_bulk_per_second"] = ess_per_second(
            reported.get("min_ess_bulk"), record["wall_seconds"]
        )
        record["draws_per_wall_second"] = chains * draws / record["wall_seconds"]
        record["ess_per_rank_hour"] = ess_per_rank_hour(
            reported.get("min_ess_bulk"), record["wall_seconds"], 1
        )
    return record


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------------------------
# Plots


def write_plots(results: dict, outdir: Path) -> list[str]:
    """speedup.png and efficiency.png (or baseline.png); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = results["mode"]
    written: list[str] = []
    if mode == "answer":
        comparisons = [c for c in results.get("comparisons", []) if c["wall_fraction"]]
        if not comparisons:
            return written
        runs = {p["label"]: p for p in results["points"]}
        pymc = {b["label"]: b for b in results["baselines"]}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels = [f"ESS {c['goal']:,}" for c in comparisons]
        slots = list(range(len(comparisons)))
        ax.bar([x - 0.2 for x in slots], [runs[c["mpi_pymc"]]["wall_seconds"] for c in comparisons],
               width=0.4, label="mpi_pymc --until-ess")  # fmt: skip
        ax.bar([x + 0.2 for x in slots],
               [pymc[c["baseline"]]["wall_seconds"] for c in comparisons], width=0.4,
               label="PyMC default run (" + ", ".join(pymc) + ")")  # fmt: skip
        ax.set_xticks(slots, labels)
        ax.set_ylabel("wall seconds from launch (lower is better)")
        ax.set_title(f"{Path(results['model']).name}: time to answer")
        ax.legend()
        return [_save_figure(plt, fig, outdir / "answer.png")]
    if mode == "baseline":
        rows = [b for b in results.get("baselines", []) if b.get("ok")]
        rows += [p for p in results.get("points", []) if p.get("ok")]
        if not rows:
            return written
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
        labels = [r.get("title") or f"mpi_pymc {r['label']}" for r in rows]
        ax.barh(labels, [r["min_ess_bulk_per_second"] or 0 for r in rows], color="tab:blue")
        ax.set_xlabel("min bulk ESS per wall second (higher is better)")
        ax.set_title(f"{Path(results['model']).name}: samplers on one machine")
        return [_save_figure(plt, fig, outdir / "baseline.png")]

    points = [p for p in results.get("points", []) if p.get("ok")]
    if not points:
        return written
    unit = "chains" if mode == "chains" else "ranks"
    xs = [p[unit] for p in points]
    xlabel = "chains on one rank" if mode == "chains" else "MPI ranks"
    title = {"weak": "Weak scaling (fixed chains per rank)",
             "strong": "Strong scaling (fixed total chains)",
             "chains": "Chains per rank (one rank)"}[mode]  # fmt: skip

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(xs, [p["ideal_speedup"] for p in points], "k--", label="ideal")
    for kind, style in (("sampling", "o-"), ("total", "s-"), ("wall", "^-")):
        ax.plot(xs, [p.get(f"speedup_{kind}") for p in points], style, label=f"{kind} time")
    _integer_log_axes(ax, xs, log_y=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput gain" if mode == "chains" else
                  "scaled speed-up" if mode == "weak" else "speed-up")  # fmt: skip
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    written.append(_save_figure(plt, fig, outdir / "speedup.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.axhline(1.0, color="k", linestyle="--", label="ideal")
    for kind, style in (("sampling", "o-"), ("total", "s-"), ("wall", "^-")):
        ax.plot(xs, [p.get(f"efficiency_{kind}") for p in points], style, label=f"{kind} time")
    _integer_log_axes(ax, xs, log_y=False)
    highest = max([p.get("efficiency_sampling") or 0 for p in points] + [1.0])
    ax.set_ylim(0, max(1.2, 1.1 * highest))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("parallel efficiency")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    written.append(_save_figure(plt, fig, outdir / "efficiency.png"))
    return written


def _save_figure(plt, fig, path: Path) -> str:
    """Lay out, write at 120 dpi, and release one figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _integer_log_axes(ax, xs: list[int], log_y: bool) -> None:
    """Base-2 log axes labelled with plain numbers (1, 2, 4...), not powers."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------------------
# Command line

EPILOG = """\
modes:
  weak      fixed --chains-per-rank on each of --ranks (default 1,2,4,... up to the cores)
  strong    fixed total --chains spread over --ranks
  chains    --chain-counts chains on one rank (one GPU with --gpus-per-rank 1)
  baseline  pm.sample() default, numpyro vectorized/parallel and nutpie, each in its own
            process, then mpi_pymc on --ranks; same chains, tune, draws, float64

Model size comes from the model file; for examples/logistic_regression.py set
MPI_PYMC_N / MPI_PYMC_D (or pass --env MPI_PYMC_N=500000). Inside a SLURM job the points are
launched with srun, elsewhere with this interpreter's mpirun (--launcher overrides).

examples:
  python -m mpi_pymc bench weak examples/logistic_regression.py --ranks 1,2,4,8 --outdir weak
  python -m mpi_pymc bench strong model.py --chains 64 --ranks 1,2,4,8,16 --ranks-per-node 8
  python -m mpi_pymc bench chains model.py --chain-counts 4,64,1024 --gpus-per-rank 1
  python -m mpi_pymc bench baseline examples/logistic_regression.py --chains 4 --ranks 4
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    bench = subparsers.add_parser(
        "bench",
        help="scaling and baseline benchmarks for allocation proposals",
        description="Benchmark mpi_pymc (weak/strong scaling, chains per rank) or compare it "
        "with what PyMC users run today; writes results.json, results.md and PNG plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(bench)
    return bench


def _add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("mode", choices=MODES, help="weak, strong, chains, baseline or answer")
    bench.add_argument("model", metavar="MODEL.py[:NAME]", help="model file (and attribute)")
    g = bench.add_argument_group("points")
    g.add_argument("--ranks", type=parse_int_list, help="rank counts, e.g. 1,2,4,8")
    g.add_argument("--chains", type=int, help="total chains (strong: 4 x max ranks; baseline: 4)")
    g.add_argument("--chains-per-rank", type=int, default=4, help="chains per rank (weak; 4)")
    g.add_argument(
        "--chain-counts", type=parse_int_list, default=[1, 4, 16, 64],
        help="chains mode: chain counts on one rank (1,4,16,64)",
    )  # fmt: skip
    g.add_argument(
        "--draws",
        type=int,
        help=f"draws per chain (1000; answer mode: the cap, {ANSWER_DRAWS_CAP})",
    )
    g.add_argument("--tune", type=int, default=1000, help="warmup steps per chain (1000)")
    g.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"root seed ({DEFAULT_SEED})")
    g.add_argument("--repeats", type=int, default=1, help="runs per point; the fastest is kept")
    g = bench.add_argument_group("passed to mpi_pymc run")
    g.add_argument("--precision", default="float64", help="float64 (default) or float32")
    g.add_argument(
        "--sampler",
        default="nuts",
        help="nuts (default), numpyro, blackjax or hmc; baseline mode takes a list (nuts,hmc)",
    )
    g.add_argument(
        "--chain-method", default="auto", help="auto (default), vectorized or sequential"
    )
    g.add_argument(
        "--adapt-group",
        type=int,
        help="hmc runs: chains that pool their warmup adaptation (run's default: 1)",
    )
    g.add_argument("--gpus-per-rank", type=int, help="GPUs per rank (default: run's default)")
    g.add_argument("--io", default="auto", help="auto, mpio or shards")
    g.add_argument("--chunk-draws", type=int, help="draws per chunk (run's default)")
    g = bench.add_argument_group("launching")
    g.add_argument(
        "--launcher", choices=LAUNCHERS, default="auto",
        help="auto (srun inside SLURM, else mpirun), mpirun, srun, or none (one rank, no launcher)",
    )  # fmt: skip
    g.add_argument(
        "--launcher-args", default="",
        help="extra launcher arguments, one string, e.g. '--bind-to core' or '--gpus-per-task 1'",
    )  # fmt: skip
    g.add_argument(
        "--ranks-per-node", type=int,
        help="for ESS per node-hour (default: SLURM tasks per node, GPUs, else cores)",
    )  # fmt: skip
    g.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="environment for every launched run, recorded in results (repeatable)",
    )  # fmt: skip
    g.add_argument("--timeout", type=float, default=3600, help="seconds per run (3600)")
    g.add_argument(
        "--cores-per-rank",
        type=int,
        help="run each point on the first ranks x K cores of this machine (taskset; mpirun or "
        "no launcher), so a weak-scaling series keeps the cores per rank fixed",
    )
    g = bench.add_argument_group("baseline and answer modes")
    g.add_argument(
        "--baselines",
        help=f"which PyMC samplers ({','.join(BASELINE_METHODS)}; default all, answer mode: "
        "numpyro_parallel, what pm.sample(nuts_sampler='numpyro') runs)",
    )  # fmt: skip
    g.add_argument(
        "--until-ess",
        type=parse_int_list,
        default=list(DEFAULT_GOALS),
        help="answer mode: the goals, min bulk and tail ESS " + ",".join(map(str, DEFAULT_GOALS)),
    )
    g.add_argument("--cores", type=int, help="cores= for pm.sample (default: this machine's)")
    g.add_argument("--baseline-script", default=str(BASELINE_SCRIPT), help=argparse.SUPPRESS)
    g = bench.add_argument_group("output")
    g.add_argument("--outdir", help="results folder (default bench-MODE)")
    g.add_argument("--keep-outputs", action="store_true", help="keep each run's HDF5 file")
    g.add_argument(
        "--warm-cache",
        action="store_true",
        help="let runs use the JAX compilation cache as configured (default: each run starts "
        "with an empty one, so compile time is counted as on a first run)",
    )
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BenchError(f"--env expects NAME=VALUE, got '{pair}'")
        out[name] = value
    return out


def _validated(args: argparse.Namespace) -> dict:
    """Every setting checked once, up front; returns the resolved plan."""
    from mpi_pymc.config import parse_model_spec

    path, name = parse_model_spec(args.model)
    if not os.path.isfile(path):
        raise BenchError(f"model file '{path}' does not exist: check the path")
    model = os.path.abspath(path) + (f":{name}" if name else "")
    if args.draws is None:
        args.draws = ANSWER_DRAWS_CAP if args.mode == "answer" else 1000
    if args.baselines is None:
        args.baselines = "numpyro_parallel" if args.mode == "answer" else ",".join(BASELINE_METHODS)
    if args.mode == "answer" and (not args.until_ess or min(args.until_ess) <= 0):
        raise BenchError("--until-ess needs positive goals, e.g. 1000,10000")
    for option in ("draws", "chains_per_rank", "repeats", "timeout"):
        if getattr(args, option) <= 0:
            raise BenchError(f"--{option.replace('_', '-')} must be positive")
    if args.tune < 0:
        raise BenchError("--tune must be zero or more")
    if args.precision not in ("float64", "float32"):
        raise BenchError(f"unknown --precision '{args.precision}': choose float64 or float32")
    if args.mode in ("baseline", "answer") and args.precision != "float64":
        raise BenchError(f"{args.mode} mode compares float64 on both sides: drop --precision")
    launcher = choose_launcher(args.launcher)
    cores = os.cpu_count() or 1
    if args.cores_per_rank is not None:
        if args.cores_per_rank < 1:
            raise BenchError(f"--cores-per-rank must be positive, got {args.cores_per_rank}")
        if launcher == "srun":
            raise BenchError("--cores-per-rank is for mpirun; under srun use --cpus-per-task")
        if shutil.which("taskset") is None:
            raise BenchError("--cores-per-rank needs taskset (util-linux): install it")
    if args.mode == "chains":
        ranks = [1]
    elif args.ranks:
        ranks = sorted(set(args.ranks))
    elif args.mode in ("baseline", "answer"):
        ranks = [max(1, min(args.chains or 4, cores))]
    else:
        ranks = powers_of_two_up_to(cores)
    usable = len(_first_cores(cores))
    if args.cores_per_rank and max(ranks) * args.cores_per_rank > usable:
        raise BenchError(
            f"--cores-per-rank {args.cores_per_rank} x {max(ranks)} ranks needs "
            f"{max(ranks) * args.cores_per_rank} cores; this machine lets us use "
            f"{usable}: lower --ranks or --cores-per-rank"
        )
    if launcher == "none" and ranks != [1]:
        raise BenchError(f"--launcher none runs one rank only; --ranks gave {ranks}")
    plan = []
    if args.mode == "weak":
        plan = [(r, r * args.chains_per_rank) for r in ranks]
    elif args.mode == "strong":
        chains = args.chains or 4 * max(ranks)
        if chains < max(ranks):
            raise BenchError(f"--chains {chains} is fewer than {max(ranks)} ranks: raise it")
        plan = [(r, chains) for r in ranks]
    elif args.mode == "chains":
        plan = [(1, c) for c in sorted(set(args.chain_counts))]
    else:
        chains = args.chains or 4
        if chains < max(ranks):
            raise BenchError(f"--chains {chains} is fewer than {max(ranks)} ranks: raise it")
        plan = [(r, chains) for r in ranks]
    samplers = [m.strip() for m in args.sampler.split(",") if m.strip()]
    if not samplers:
        raise BenchError("--sampler is empty: name nuts, numpyro, blackjax or hmc")
    if len(samplers) > 1 and args.mode not in ("baseline", "answer"):
        raise BenchError(
            f"--sampler takes one sampler in {args.mode} mode (a list only in baseline mode)"
        )
    baselines = [m.strip() for m in args.baselines.split(",") if m.strip()]
    unknown = [m for m in baselines if m not in BASELINE_METHODS]
    if unknown:
        raise BenchError(
            f"unknown --baselines {', '.join(unknown)}: choose from {', '.join(BASELINE_METHODS)}"
        )
    if args.ranks_per_node is not None:
        ranks_per_node, source = args.ranks_per_node, "--ranks-per-node"
    else:
        ranks_per_node, source = default_ranks_per_node(args.gpus_per_rank)
    return {
        "model": model,
        "launcher": launcher,
        "plan": plan,
        "samplers": samplers,
        "baselines": baselines if args.mode in ("baseline", "answer") else [],
        "ranks_per_node": ranks_per_node,
        "ranks_per_node_source": source,
        "env": _parse_env(args.env),
        "outdir": Path(args.outdir or f"bench-{args.mode}"),
        "cores": args.cores or cores,
    }


def _run_options(args: argparse.Namespace, sampler: str) -> list[str]:
    options = [
        "--draws", str(args.draws), "--tune", str(args.tune), "--seed", str(args.seed),
        "--precision", args.precision, "--sampler", sampler,
        "--chain-method", args.chain_method, "--io", args.io,
    ]  # fmt: skip
    if args.gpus_per_rank is not None:
        options += ["--gpus-per-rank", str(args.gpus_per_rank)]
    if args.chunk_draws is not None:
        options += ["--chunk-draws", str(args.chunk_draws)]
    if args.adapt_group is not None and sampler == "hmc":
        options += ["--adapt-group", str(args.adapt_group)]
    return options


def _fastest(records: list[dict]) -> dict:
    ok = [r for r in records if r.get("ok")]
    best = min(ok, key=lambda r: r["wall_seconds"]) if ok else records[-1]
    if len(records) > 1:
        best["wall_seconds_all"] = [r.get("wall_seconds") for r in records]
    return best


def _say(text: str) -> None:
    print(text, flush=True)


def _describe(record: dict) -> str:
    if not record.get("ok"):
        return f"FAILED ({record.get('skipped') or record.get('error')}); log {record['log']}"
    f = format_number
    return (
        f"wall {f(record['wall_seconds'])}s, min bulk ESS {f(record['min_ess_bulk'], 'int')}, "
        f"{f(record['min_ess_bulk_per_second'])} ESS/s, max R-hat {f(record['max_r_hat'], 'rhat')}"
    )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.mode`` describes; 0 when every point succeeded."""
    try:
        plan = _validated(args)
        launcher_args = args.launcher_args.split()
        prefix = launcher_prefix(plan["launcher"], 1, []) if plan["launcher"] != "none" else []
    except BenchError as exc:
        print(f"mpi_pymc bench: error: {exc}", file=sys.stderr)
        return 2
    outdir: Path = plan["outdir"]
    outdir.mkdir(parents=True, exist_ok=True)
    samplers: list[str] = plan["samplers"]
    run_options = {sampler: _run_options(args, sampler) for sampler in samplers}
    results: dict = {
        "mode": args.mode,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command_line": list(sys.argv),
        "model": plan["model"],
        "settings": {
            "draws": args.draws,
            "tune": args.tune,
            "seed": args.seed,
            "precision": args.precision,
            "sampler": ",".join(samplers),
            "chain_method": args.chain_method,
            "gpus_per_rank": args.gpus_per_rank,
            "repeats": args.repeats,
            "until_ess": args.until_ess if args.mode == "answer" else None,
            "jax_cache": "warm" if args.warm_cache else "cold (empty per run)",
            "cores_per_rank": args.cores_per_rank,
            "run_options": run_options[samplers[0]] if len(samplers) == 1 else run_options,
        },
        "environment": recorded_environment(plan["env"]),
        "launcher": plan["launcher"],
        "launcher_args": launcher_args,
        "ranks_per_node": plan["ranks_per_node"],
        "ranks_per_node_source": plan["ranks_per_node_source"],
        "machine": machine_facts(prefix or None),
        "points": [],
    }
    _say(
        f"mpi_pymc bench {args.mode}: {len(plan['plan']) * len(samplers)} mpi_pymc point(s)"
        + (f" and {len(plan['baselines'])} baseline(s)" if plan["baselines"] else "")
        + f" on {results['machine']['cpu_model']}; results in {outdir}/"
    )

    if plan["baselines"]:
        results["baselines"] = []
        chains = plan["plan"][0][1]
        for method in plan["baselines"]:
            tries = [
                run_baseline(
                    method=method,
                    model=plan["model"],
                    chains=chains,
                    tune=PYMC_DEFAULT_TUNE if args.mode == "answer" else args.tune,
                    draws=PYMC_DEFAULT_DRAWS if args.mode == "answer" else args.draws,
                    seed=args.seed,
                    cores=plan["cores"],
                    workdir=outdir,
                    timeout=args.timeout,
                    env_extra=plan["env"],
                    script=Path(args.baseline_script),
                )  # fmt: skip
                for _ in range(args.repeats)
            ]
            record = _fastest(tries)
            results["baselines"].append(record)
            _say(f"  baseline {method}: {_describe(record)}")

    goals = args.until_ess if args.mode == "answer" else [None]
    points = [(s, point, goal) for s in samplers for point in plan["plan"] for goal in goals]
    for sampler, (ranks, chains), goal in points:
        label = f"{args.mode}-r{ranks}-c{chains}" + (f"-{sampler}" if len(samplers) > 1 else "")
        options = run_options[sampler]
        if goal is not None:
            label += f"-ess{goal}"
            options = [*options, "--until-ess", str(goal)]
        tries = []
        for attempt in range(args.repeats):
            tries.append(
                run_point(
                    label=label if args.repeats == 1 else f"{label}-{attempt}",
                    model=plan["model"],
                    ranks=ranks,
                    chains=chains,
                    run_options=options,
                    launcher=plan["launcher"],
                    launcher_args=launcher_args,
                    workdir=outdir,
                    timeout=args.timeout,
                    env_extra=plan["env"],
                    ranks_per_node=plan["ranks_per_node"],
                    keep_output=args.keep_outputs,
                    cold_cache=not args.warm_cache,
                    cores_per_rank=args.cores_per_rank,
                )  # fmt: skip
            )
        record = _fastest(tries)
        record["label"] = label
        if goal is not None:
            record["goal"] = goal
        results["points"].append(record)
        _say(f"  {label}: {_describe(record)}")

    if args.mode == "answer":
        results["comparisons"] = answer_comparisons(results["points"], results["baselines"])
    elif args.mode != "baseline":
        add_scaling(results["points"], args.mode)
    else:
        results["ratios"] = baseline_ratios(
            [p for p in results["points"] if p.get("ok")],
            [b for b in results["baselines"] if b.get("ok")],
        )
    first_ok = next((p for p in results["points"] if p.get("ok")), None)
    if first_ok:
        results["versions"] = first_ok.get("versions") or {}
        results["machine"]["mpi_library"] = results["versions"].get(
            "mpi_library", results["machine"].get("mpi_library")
        )
    for b in results.get("baselines", []):
        for k, v in (b.get("versions") or {}).items():
            results.setdefault("versions", {}).setdefault(k, v)

    files: dict[str, Any] = {
        "json": str(outdir / "results.json"),
        "markdown": str(outdir / "results.md"),
    }
    if not args.no_plots:
        try:
            files["plots"] = write_plots(results, outdir)
        except Exception as exc:  # plots are a convenience; the numbers must still land
            files["plots_error"] = f"{type(exc).__name__}: {exc}"
    results["files"] = files
    results = clean_json(results)
    markdown = render_markdown(results)
    Path(files["markdown"]).write_text(markdown)
    Path(files["json"]).write_text(json.dumps(results, indent=2, default=str) + "\n")
    _say(markdown)
    _say(f"wrote {', '.join([files['json'], files['markdown'], *files.get('plots', [])])}")
    failed = [p["label"] for p in results["points"] if not p.get("ok")]
    failed += [b["label"] for b in results.get("baselines", []) if b.get("error")]
    if failed:
        print(f"mpi_pymc bench: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # ``python -m mpi_pymc.bench ...`` works without the CLI wiring (used by gpu_check).
    _parser = argparse.ArgumentParser(
        prog="python -m mpi_pymc.bench",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
