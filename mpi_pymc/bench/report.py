"""What a benchmark's results become: the markdown an allocation proposal pastes
(:func:`render_markdown`), its table cells (:func:`format_number`) and strict JSON
(:func:`clean_json`)."""

from __future__ import annotations

import math

from mpi_pymc.bench.figures import GOAL_RHAT
from mpi_pymc.bench.launching import BASELINE_TITLES


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
    header = ["goal (min bulk / tail ESS)", "mpi_pymc run", "time to answer s", "draws/chain",
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
        tail = c.get("tail_goal", c["goal"])
        goal = f"{c['goal']:,} / " + (f"{tail:,}" if tail else "any")
        rows.append([goal, p["label"], *mine, b.get("title", b["label"]), *theirs,
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
            f"ESS reach the goal with max R-hat <= {GOAL_RHAT} (mpi_pymc run --until-ess and "
            "--until-tail-ess; a tail goal of 'any' asks nothing of tail ESS; "
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
