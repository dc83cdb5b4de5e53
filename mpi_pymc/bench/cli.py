"""``python -m mpi_pymc bench``: the subcommand's options, their validation into a plan, and
:func:`main`, which runs the plan's points and writes results.json, results.md and the plots."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mpi_pymc.bench.figures import add_scaling, answer_comparisons, baseline_ratios
from mpi_pymc.bench.launching import (
    BASELINE_METHODS,
    BASELINE_SCRIPT,
    BenchError,
    choose_launcher,
    launcher_prefix,
    run_baseline,
    run_point,
)
from mpi_pymc.bench.machine import (
    default_ranks_per_node,
    first_cores,
    machine_facts,
    recorded_environment,
)
from mpi_pymc.bench.plots import write_plots
from mpi_pymc.bench.report import clean_json, format_number, render_markdown

MODES = ("weak", "strong", "chains", "baseline", "answer")
LAUNCHERS = ("auto", "mpirun", "srun", "none")
DEFAULT_SEED = 20261127
# answer mode: the goals, the draws cap per chain, and what PyMC runs when not told otherwise.
DEFAULT_GOALS = (1000, 10000)
ANSWER_DRAWS_CAP = 20000
PYMC_DEFAULT_TUNE = PYMC_DEFAULT_DRAWS = 1000


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


EPILOG = """\
modes:
  weak      fixed --chains-per-rank on each of --ranks (default 1,2,4,... up to the cores)
  strong    fixed total --chains spread over --ranks
  chains    --chain-counts chains on one rank (one GPU with --gpus-per-rank 1)
  baseline  pm.sample() default, numpyro vectorized/parallel and nutpie (numba, JAX, and JAX
            with its low-rank mass matrix), each in its own process, then mpi_pymc on
            --ranks; same chains, tune, draws, float64

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
    add_arguments(bench)
    return bench


def add_arguments(bench: argparse.ArgumentParser) -> None:
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
    g.add_argument(
        "--until-tail-ess",
        type=int,
        metavar="M",
        help="answer mode: the min tail ESS of every goal (default: the goal itself; 0: bulk "
        "ESS and R-hat only, run --until-tail-ess)",
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
    from mpi_pymc.core.config import parse_model_spec

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
    if args.until_tail_ess is not None and args.until_tail_ess < 0:
        raise BenchError("--until-tail-ess must be 0 (bulk ESS only) or more")
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
    usable = len(first_cores(cores))
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
            "until_tail_ess": args.until_tail_ess if args.mode == "answer" else None,
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
            if args.until_tail_ess is not None:
                options = [*options, "--until-tail-ess", str(args.until_tail_ess)]
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
            record["tail_goal"] = goal if args.until_tail_ess is None else args.until_tail_ess
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
