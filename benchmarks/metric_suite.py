"""The metric suite (issue 34): mpi_pymc's default run and its ``--metric diag`` side by side with
numpyro and nutpie on five posteriors, one whole process per run, min bulk ESS per wall second.

    python benchmarks/metric_suite.py                  # the whole suite, an hour or more
    python benchmarks/metric_suite.py --posteriors horseshoe --methods mpi_pymc,nutpie_jax
    python benchmarks/metric_suite.py --smoke --posteriors eight_schools  # checks this script

Posteriors: the logistic example at N=50,000, D=20 (independent features), a logistic
regression with 30 AR(1)-correlated features (``benchmarks/models/collinear_logistic.py``), a
Poisson GLMM with LKJ-correlated group intercepts and slopes (``glmm_lkj.py``), a regularised
horseshoe regression (``horseshoe.py``) and eight schools (``examples/eight_schools.py``).
Methods: ``mpi_pymc`` (``mpirun -n 2 python -m mpi_pymc run``, its default ``--metric``),
``mpi_pymc_diag`` (the same with ``--metric diag``), ``mpi_pymc_warm`` (the default again, the
second of two runs sharing one JAX compilation cache: what a job sampling a model sampled before
costs; the first run is not recorded), and the peers ``numpyro_parallel``,
``nutpie_jax`` (nutpie's JAX backend at its default warmup) and ``nutpie_jax_low_rank`` (the same
with ``low_rank_modified_mass_matrix=True``), each through ``benchmarks/baseline_pymc.py``.

Every run is launched by ``python -m mpi_pymc bench``'s own functions (``run_point``,
``run_baseline``): 4 chains, 1000 tune + 1000 draws, the bench's fixed seed, float64, an empty
JAX compilation cache for every mpi_pymc run but the warm one (the peers keep none), the wall
clock of the whole process. Results go to ``benchmarks/results/cpu/metric-suite-<date>/``
(``--out``): one JSON per run (``<posterior>/<method>.json``, logs beside it), ``results.json``
and ``results.md`` with every row, then per posterior mpi_pymc ÷ the best peer (worst first),
and the geometric mean and the worst case over the suite, for each mpi_pymc row. Both summary
files are rewritten after every run, so a suite cut short keeps what it measured; ``--resume`` skips
the runs whose JSON already says ok. Run it on a quiet machine: other jobs change every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python benchmarks/metric_suite.py`` from a checkout
    sys.path.insert(0, str(ROOT))

from mpi_pymc.bench.cli import DEFAULT_SEED, _describe  # noqa: E402
from mpi_pymc.bench.launching import (  # noqa: E402
    BASELINE_TITLES,
    BenchError,
    choose_launcher,
    launcher_prefix,
    read_output_attrs,
    run_baseline,
    run_point,
)
from mpi_pymc.bench.machine import machine_facts, recorded_environment  # noqa: E402
from mpi_pymc.bench.report import _table, _versions_text, clean_json, format_number  # noqa: E402


@dataclass(frozen=True)
class Posterior:
    title: str
    model: Path
    env: dict[str, str] = field(default_factory=dict)  # every size set, whatever the shell has
    smoke_env: dict[str, str] = field(default_factory=dict)


MODELS = ROOT / "benchmarks" / "models"
POSTERIORS = {
    "logistic": Posterior(
        "logistic regression, N=50,000, D=20, independent features",
        ROOT / "examples" / "logistic_regression.py",
        {"MPI_PYMC_N": "50000", "MPI_PYMC_D": "20"},
        {"MPI_PYMC_N": "1000", "MPI_PYMC_D": "5"},
    ),
    "collinear_logistic": Posterior(
        "logistic regression, N=20,000, 30 AR(1) features (adjacent correlation 0.95)",
        MODELS / "collinear_logistic.py",
        {
            "MPI_PYMC_COLLINEAR_N": "20000",
            "MPI_PYMC_COLLINEAR_D": "30",
            "MPI_PYMC_COLLINEAR_RHO": "0.95",
        },
        {
            "MPI_PYMC_COLLINEAR_N": "1000",
            "MPI_PYMC_COLLINEAR_D": "6",
            "MPI_PYMC_COLLINEAR_RHO": "0.95",
        },
    ),  # fmt: skip
    "glmm_lkj": Posterior(
        "Poisson GLMM, 150 groups, LKJ-correlated intercepts and slopes, 15,000 rows",
        MODELS / "glmm_lkj.py",
        {"MPI_PYMC_GLMM_GROUPS": "150", "MPI_PYMC_GLMM_N": "15000"},
        {"MPI_PYMC_GLMM_GROUPS": "10", "MPI_PYMC_GLMM_N": "500"},
    ),
    "horseshoe": Posterior(
        "regularised horseshoe regression, N=200, D=50, 5 non-zero, non-centred",
        MODELS / "horseshoe.py",
        {"MPI_PYMC_HORSESHOE_N": "200", "MPI_PYMC_HORSESHOE_D": "50", "MPI_PYMC_HORSESHOE_K": "5"},
        {"MPI_PYMC_HORSESHOE_N": "50", "MPI_PYMC_HORSESHOE_D": "10", "MPI_PYMC_HORSESHOE_K": "2"},
    ),
    "eight_schools": Posterior(
        "eight schools, non-centred", ROOT / "examples" / "eight_schools.py"
    ),
}
# mpi_pymc's rows: the options each adds to ``mpi_pymc run``.
MPI_METHODS = {"mpi_pymc": [], "mpi_pymc_diag": ["--metric", "diag"], "mpi_pymc_warm": []}
# Rows run twice with one JAX compilation cache: the first run fills it (not recorded), the
# second is measured. A job that samples a model it sampled before (another seed, another
# allocation) starts so; PyMC's samplers keep no cache between runs, so their rows stay cold.
WARM = ("mpi_pymc_warm",)
PEERS = ("numpyro_parallel", "nutpie_jax", "nutpie_jax_low_rank")
METHODS = (*MPI_METHODS, *PEERS)
SHORT_TITLES = {
    "mpi_pymc": "mpi_pymc, default metric",
    "mpi_pymc_diag": "mpi_pymc, `--metric diag`",
    "mpi_pymc_warm": "mpi_pymc, default metric, warm cache",
    "numpyro_parallel": "numpyro parallel",
    "nutpie_jax": "nutpie JAX (diagonal)",
    "nutpie_jax_low_rank": "nutpie JAX low-rank",
}
SMOKE_TUNE = SMOKE_DRAWS = 100


def _names(text: str | None, known, what: str) -> list[str]:
    if text is None:
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise BenchError(f"unknown --{what} {', '.join(unknown) or '(none)'}: "
                         f"choose from {', '.join(known)}")  # fmt: skip
    return list(dict.fromkeys(names))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posteriors", help=f"comma-separated ({', '.join(POSTERIORS)}; all)")
    parser.add_argument("--methods", help=f"comma-separated ({', '.join(METHODS)}; all)")
    parser.add_argument(
        "--out", help="results folder (default benchmarks/results/cpu/metric-suite-<date>)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny data and {SMOKE_TUNE} tune + {SMOKE_DRAWS} draws, to check this script "
        "(default --out: a folder under the temporary directory)",
    )
    parser.add_argument("--chains", type=int, default=4, help="chains of every run (4)")
    parser.add_argument("--ranks", type=int, default=2, help="mpi_pymc's ranks (2)")
    parser.add_argument("--tune", type=int, help="warmup per chain (1000)")
    parser.add_argument("--draws", type=int, help="draws per chain (1000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"({DEFAULT_SEED})")
    parser.add_argument(
        "--cores", type=int, default=os.cpu_count() or 1, help="cores= for the peers"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run (3600)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs whose JSON in --out says ok"
    )
    args = parser.parse_args(argv)
    args.tune = args.tune if args.tune is not None else SMOKE_TUNE if args.smoke else 1000
    args.draws = args.draws if args.draws is not None else SMOKE_DRAWS if args.smoke else 1000
    return args


# --- the summary: pure functions of the records -------------------------------------------------


def geometric_mean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _rate(record: dict | None) -> float | None:
    if not record or not record.get("ok"):
        return None
    value = record.get("min_ess_bulk_per_second")
    return value if value and value > 0 else None


def compare(records: list[dict], posteriors: list[str]) -> dict:
    """Per posterior: each mpi_pymc row's min bulk ESS per wall second over the best peer's;
    over the suite: their geometric mean and the worst case, per mpi_pymc row."""
    rows = []
    for name in posteriors:
        runs = {r["method"]: r for r in records if r.get("posterior") == name}
        peers = {m: _rate(runs.get(m)) for m in PEERS if m in runs}
        ran = {m: v for m, v in peers.items() if v}
        best = max(ran, key=ran.__getitem__) if ran else None
        row = {
            "posterior": name,
            "best_peer": best,
            "best_peer_ess_per_second": ran.get(best),
            "peers_failed": [m for m, v in peers.items() if not v],
        }
        for method in MPI_METHODS:
            mine = _rate(runs.get(method))
            row[method] = mine
            row[f"{method}_vs_best_peer"] = mine / ran[best] if mine and best else None
        default, diag = row.get("mpi_pymc"), row.get("mpi_pymc_diag")
        row["default_vs_diag"] = default / diag if default and diag else None
        rows.append(row)
    suite = {}
    for method in MPI_METHODS:
        ratios = {r["posterior"]: r[f"{method}_vs_best_peer"] for r in rows}
        have = {k: v for k, v in ratios.items() if v}
        worst = min(have, key=have.__getitem__) if have else None
        suite[method] = {
            "geometric_mean_vs_best_peer": geometric_mean(list(have.values())),
            "worst_vs_best_peer": have.get(worst),
            "worst_posterior": worst,
            "posteriors": len(have),
            "missing": [k for k, v in ratios.items() if not v],
        }
    return {"per_posterior": rows, "suite": suite}


def _method_cells(record: dict) -> list[str]:
    f = format_number
    if not record.get("ok"):
        why = str(record.get("skipped") or record.get("error") or "failed")
        return ["failed: " + why[:70], "", "", "", "", ""]
    metric = record.get("metric_used")
    if metric is None and record.get("metric_requested"):
        metric = f"{record['metric_requested']} (asked; the file names none used)"
    return [
        f(record.get("wall_seconds")),
        f(record.get("min_ess_bulk"), "int"),
        f(record.get("min_ess_bulk_per_second")),
        f(record.get("max_r_hat"), "rhat"),
        f(record.get("divergences"), "int"),
        "" if metric is None else str(metric),
    ]


def render(results: dict) -> str:
    """results.md: every row, then mpi_pymc ÷ the best peer per posterior (worst first) and
    over the suite."""
    f = format_number
    s, machine = results["settings"], results.get("machine", {})
    lines = [
        f"## Metric suite, {results['created_at'][:10]}" + (" (smoke)" if s["smoke"] else ""),
        "",
        f"- {s['chains']} chains, {s['tune']} tune + {s['draws']} draws, seed {s['seed']}, "
        f"float64; one whole process per run, wall clock from launch to exit; mpi_pymc on "
        f"`mpirun -n {s['ranks']}` with an empty JAX compilation cache per run (the warm-cache "
        f"row: the second of two runs sharing one); the peers "
        f"through `benchmarks/baseline_pymc.py` (`cores={s['cores']}`).",
        f"- Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores; "
        f"versions: {_versions_text(results.get('versions', {}))}.",
        f"- Command: `{' '.join(results['command_line'])}`",
        "",
        "| posterior | method | wall s | min bulk ESS | min bulk ESS/s | max R-hat | "
        "divergences | metric (mpi_pymc) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        cells = [r["posterior"], SHORT_TITLES.get(r["method"], r["method"]), *_method_cells(r)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    comparison = results["comparison"]
    rows = sorted(
        comparison["per_posterior"],
        key=lambda r: (r["mpi_pymc_vs_best_peer"] is None, r["mpi_pymc_vs_best_peer"] or 0.0),
    )
    lines += [
        "",
        "mpi_pymc's min bulk ESS per wall second over the best peer's (above 1: mpi_pymc is "
        "better), the ones against the default first:",
        "",
        _table(
            [
                "posterior",
                "best peer",
                "its ESS/s",
                "mpi_pymc default ESS/s",
                "default ÷ best peer",
                "`--metric diag` ESS/s",
                "diag ÷ best peer",
                "default ÷ diag",
                "warm cache ESS/s",
                "warm ÷ best peer",
            ],
            [
                [
                    r["posterior"],
                    SHORT_TITLES.get(r["best_peer"], "—") if r["best_peer"] else "—",
                    f(r["best_peer_ess_per_second"]),
                    f(r["mpi_pymc"]),
                    f(r["mpi_pymc_vs_best_peer"], "ratio"),
                    f(r["mpi_pymc_diag"]),
                    f(r["mpi_pymc_diag_vs_best_peer"], "ratio"),
                    f(r["default_vs_diag"], "ratio"),
                    f(r["mpi_pymc_warm"]),
                    f(r["mpi_pymc_warm_vs_best_peer"], "ratio"),
                ]
                for r in rows
            ],
        ),  # fmt: skip
        "",
    ]
    for method, label in (
        ("mpi_pymc", "default metric"),
        ("mpi_pymc_diag", "`--metric diag`"),
        ("mpi_pymc_warm", "default metric, warm cache (the model's second run)"),
    ):
        suite = comparison["suite"][method]
        if not suite["posteriors"]:
            continue
        missing = f" (no ratio for {', '.join(suite['missing'])})" if suite["missing"] else ""
        lines.append(
            f"- mpi_pymc, {label}, over the best peer: geometric mean "
            f"**{f(suite['geometric_mean_vs_best_peer'], 'ratio')}** over "
            f"{suite['posteriors']} posterior(s), worst **{f(suite['worst_vs_best_peer'], 'ratio')}"
            f"** ({suite['worst_posterior']}){missing}."
        )
    failed = [r for r in comparison["per_posterior"] if r["peers_failed"]]
    for r in failed:
        lines.append(f"- {r['posterior']}: no figure from {', '.join(r['peers_failed'])}.")
    lines += [
        "",
        "Posteriors: "
        + "; ".join(f"`{k}`: {POSTERIORS[k].title}" for k in results["settings"]["posteriors"])
        + ". Peers: "
        + "; ".join(f"{SHORT_TITLES[m]}: `{BASELINE_TITLES[m]}`" for m in PEERS)
        + (
            ". Smoke sizes: "
            + "; ".join(
                f"`{k}` " + " ".join(f"{n}={v}" for n, v in POSTERIORS[k].smoke_env.items())
                for k in results["settings"]["posteriors"]
                if POSTERIORS[k].smoke_env
            )
            if s["smoke"]
            else ""
        )
        + ". Min bulk ESS over every scalar of every posterior variable (Deterministics "
        "included); ESS/s divides it by the whole process's wall seconds.",
        "",
    ]
    return "\n".join(lines)


# --- running ------------------------------------------------------------------------------------


def _metric_used(record: dict) -> None:
    """What the output file says about the metric (any root attribute naming one), then the
    file goes: the bench keeps no outputs."""
    output = record.pop("output", None)
    if not output:
        return
    try:
        attrs = read_output_attrs(output)
    except OSError:
        attrs = {}
    found = {k: v for k, v in attrs.items() if "metric" in k.lower()}
    record["metric_attributes"] = found
    record["metric_requested"] = (record.get("settings") or {}).get("metric")
    # A name that says "used" first (the metric chosen), then any other that names one.
    ordered = sorted(found, key=lambda k: "used" not in k.lower())
    record["metric_used"] = next(
        (found[k] for k in ordered if isinstance(found[k], (str, list))), None
    )
    from mpi_pymc.output.layout import remove_output

    remove_output(output)


def run_one(name: str, method: str, args: argparse.Namespace, launcher: str, out: Path) -> dict:
    posterior = POSTERIORS[name]
    env = dict(posterior.smoke_env if args.smoke else posterior.env)
    workdir = out / name
    load_before = os.getloadavg()
    if method in MPI_METHODS:
        warm = workdir / "jax-cache" / f"{method}-kept"
        if method in WARM:
            env["MPI_PYMC_JAX_CACHE"] = str(warm)
        for label in ([f"{method}-fill"] if method in WARM else []) + [method]:
            record = run_point(
                label=label,
                model=str(posterior.model),
                ranks=args.ranks,
                chains=args.chains,
                run_options=["--tune", str(args.tune), "--draws", str(args.draws),
                             "--seed", str(args.seed), *MPI_METHODS[method]],
                launcher=launcher,
                launcher_args=[],
                workdir=workdir,
                timeout=args.timeout,
                env_extra=env,
                ranks_per_node=None,
                keep_output=True,
                cold_cache=method not in WARM,
            )  # fmt: skip
            _metric_used(record)
        shutil.rmtree(warm, ignore_errors=True)
        record["title"] = f"mpirun -n {args.ranks} python -m mpi_pymc run " + " ".join(
            MPI_METHODS[method]
        )
    else:
        record = run_baseline(
            method=method,
            model=str(posterior.model),
            chains=args.chains,
            tune=args.tune,
            draws=args.draws,
            seed=args.seed,
            cores=args.cores,
            workdir=workdir,
            timeout=args.timeout,
            env_extra=env,
        )
    for scratch in ("runs", "jax-cache"):  # empty once the run is read; logs stay
        try:
            (workdir / scratch).rmdir()
        except OSError:
            pass
    record.update(
        posterior=name,
        method=method,
        model=str(posterior.model),
        model_env=env,
        loadavg_before=list(load_before),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        posteriors = _names(args.posteriors, POSTERIORS, "posteriors")
        methods = _names(args.methods, METHODS, "methods")
        if args.chains < args.ranks:
            raise BenchError(f"--chains {args.chains} is fewer than --ranks {args.ranks}")
        launcher = choose_launcher("auto")
        prefix = launcher_prefix(launcher, 1, [])
    except BenchError as exc:
        print(f"metric_suite: error: {exc}", file=sys.stderr)
        return 2
    today = time.strftime("%Y-%m-%d")
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.gettempdir()) / f"metric-suite-smoke-{today}"
    else:
        out = ROOT / "benchmarks" / "results" / "cpu" / f"metric-suite-{today}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command_line": [
            "python",
            "benchmarks/metric_suite.py",
            *(sys.argv[1:] if argv is None else argv),
        ],  # fmt: skip
        "settings": {
            "posteriors": posteriors,
            "methods": methods,
            "chains": args.chains,
            "ranks": args.ranks,
            "tune": args.tune,
            "draws": args.draws,
            "seed": args.seed,
            "cores": args.cores,
            "smoke": args.smoke,
            "precision": "float64",
            "jax_cache": "cold (empty per mpi_pymc run; the peers keep none); mpi_pymc_warm: "
            "the second of two runs sharing one",
            "launcher": launcher,
        },
        "environment": recorded_environment({}),
        "machine": machine_facts(prefix or None),
        "runs": [],
    }
    total = len(posteriors) * len(methods)
    print(f"metric suite: {total} run(s), {args.chains} chains, {args.tune} tune + "
          f"{args.draws} draws; results in {out}/", flush=True)  # fmt: skip
    failed = []
    for name in posteriors:
        for method in methods:
            path = out / name / f"{method}.json"
            record = None
            if args.resume and path.exists():
                kept = json.loads(path.read_text())
                if kept.get("ok"):
                    record = kept
            if record is None:
                record = clean_json(run_one(name, method, args, launcher, out))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record, indent=2, default=str) + "\n")
            if not record.get("ok"):
                failed.append(f"{name}/{method}")
            results["runs"].append(record)
            for key, value in (record.get("versions") or {}).items():
                results.setdefault("versions", {}).setdefault(key, value)
            print(f"  {name} / {method}: {_describe(record)}", flush=True)
            results["comparison"] = compare(results["runs"], posteriors)
            results = clean_json(results)
            (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
            (out / "results.md").write_text(render(results))
    print(render(results), flush=True)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and one JSON per run", flush=True)
    if failed:
        print(f"metric_suite: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
