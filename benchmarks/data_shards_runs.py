"""Data shards as a user runs them: whole processes, cold cache, one row per layout (issue #35).

A logistic regression (N rows, D = 20 features, float64; the model file below, its data drawn
from a fixed seed) sampled by ``python -m mpi_pymc run`` in five layouts, one after another on
an otherwise quiet machine:

    one_core       1 rank pinned to one core (taskset -c 0), 1 chain, whole data
    two_shards     mpirun -n 2 --bind-to core, --data-shards 2: 1 chain, half the rows per rank
    both_cores     1 rank, both cores (XLA's threads), 1 chain: what a user runs on one node
    chains_shards  mpirun -n 2, --data-shards 2, 2 chains: 2 shards x 1 chain group
    chains_groups  mpirun -n 2, 2 chains: 2 chain groups x 1 shard (no collective)

For each: wall seconds of the whole process, the run's own phase timings, seconds per leapfrog
while sampling (sampling seconds over the leapfrogs of the busiest chain group's chain), min
bulk ESS, the time to min bulk ESS 1,000 (everything before sampling plus sampling scaled to
1,000 ESS), and the peak RSS of the ranks that report it (shard 0's). Ratios are printed against
``one_core`` and ``both_cores``, and chains_shards against chains_groups.

    PYTHONPATH=. .venv/bin/python benchmarks/data_shards_runs.py --out benchmarks/results/cpu/DIR
    PYTHONPATH=. .venv/bin/python benchmarks/data_shards_runs.py --rows 20000 --out /tmp/ds  # smoke
With ``--baseline-rows 20000`` each layout runs again with that many rows, and the difference of
the two peak RSS is reported as the peak memory for the data (the rest, the imports and XLA's
compiles, does not grow with the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

MODEL = """
import os

import numpy as np
import pymc as pm

N, D = int(os.environ["BENCH_ROWS"]), 20
rng = np.random.default_rng(20261207)
X = rng.normal(size=(N, D))
beta_true = rng.normal(scale=0.5, size=D)
y = (rng.random(N) < 1 / (1 + np.exp(-(0.2 + X @ beta_true)))).astype("int8")
with pm.Model() as model:
    alpha = pm.Normal("alpha", 0.0, 2.5)
    beta = pm.Normal("beta", 0.0, 1.0, shape=D)
    pm.Bernoulli("y", logit_p=alpha + pm.Data("X", X) @ beta, observed=y)
"""

LAYOUTS = {
    "one_core": (["taskset", "-c", "0"], None, 1, []),
    "two_shards": ([], 2, 1, ["--data-shards", "2"]),
    "both_cores": ([], None, 1, []),
    "chains_shards": ([], 2, 2, ["--data-shards", "2"]),
    "chains_groups": ([], 2, 2, []),
}


def _mpirun() -> str:
    from mpi_pymc.core.mpi_env import find_mpirun

    return find_mpirun()


def run_layout(name: str, model: Path, rows: int, tune: int, draws: int, work: Path) -> dict:
    import h5py

    prefix, ranks, chains, extra = LAYOUTS[name]
    out = work / f"{name}-{rows}.h5"
    cmd = [sys.executable, "-m", "mpi_pymc", "run", str(model), "--chains", str(chains),
           "--tune", str(tune), "--draws", str(draws), "--seed", "1", "--precision", "float64",
           "--out", str(out), *extra]  # fmt: skip
    if ranks is not None:
        cmd = [_mpirun(), "-n", str(ranks), "--bind-to", "core", *cmd]
    cache = work / f"cache-{name}-{rows}"  # cold: a fresh persistent-cache folder per run
    env = {**os.environ, "BENCH_ROWS": str(rows), "MPI_PYMC_JAX_CACHE": str(cache),
           "JAX_PLATFORMS": "cpu", "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"}  # fmt: skip
    env.pop("JAX_NUM_CPU_DEVICES", None)
    start = time.perf_counter()
    proc = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: {' '.join(prefix + cmd)} failed:\n{proc.stderr[-3000:]}")
    with h5py.File(out) as f:
        timings = json.loads(f.attrs["timings"])
        diagnostics = json.loads(f.attrs["diagnostics"])
        n_steps = np.asarray(f["sample_stats/n_steps"][()], dtype=float)  # (chains, draws)
        rss = json.loads(str(f.attrs["peak_rss_mb"]))
    # Per draw, the longest trajectory of the chains: vectorized chains wait for it (and for one
    # chain it is that chain's).
    leapfrogs = float(n_steps.max(axis=0).sum())
    ess = float(np.nanmin(diagnostics["ess_bulk"]))
    before_sampling = (
        wall - timings["sampling"] - timings.get("io", 0.0) - timings.get("diagnostics", 0.0)
    )
    return {
        "layout": name,
        "command": " ".join(prefix + cmd),
        "wall_s": round(wall, 2),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "leapfrogs": leapfrogs,
        "s_per_leapfrog": timings["sampling"] / leapfrogs,
        "min_ess_bulk": ess,
        "s_to_ess_1000": before_sampling + timings["sampling"] * 1000.0 / ess,
        "draws_per_s": chains * draws / timings["sampling"],
        "peak_rss_mb": rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--only", help="comma-separated layouts (default: all five)")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json/.txt")
    parser.add_argument(
        "--baseline-rows", type=int, default=0,
        help="also run each layout with this many rows (e.g. 20000): its peak RSS is what a rank "
        "needs without the data, so the difference is the peak memory for the data",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = args.only.split(",") if args.only else list(LAYOUTS)
    found: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="data_shards_runs-"))
    try:
        model = work / "logistic_rows.py"
        model.write_text(MODEL)
        for name in wanted:
            load = os.getloadavg()[0]
            found[name] = {**run_layout(name, model, args.rows, args.tune, args.draws, work),
                           "load_before": load}  # fmt: skip
            print(json.dumps(found[name]), flush=True)
            if args.baseline_rows:
                small = run_layout(name, model, args.baseline_rows, args.tune, args.draws, work)
                found[name]["baseline_peak_rss_mb"] = small["peak_rss_mb"]
                found[name]["data_peak_rss_mb"] = max(found[name]["peak_rss_mb"]) - max(
                    small["peak_rss_mb"]
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"rows {args.rows}, D 20, float64, tune {args.tune}, draws {args.draws}, cold cache"]
    lines.append(f"{'layout':14s} {'wall s':>8s} {'s/leapfrog':>11s} {'min ESS':>8s} "
                 f"{'s to ESS 1000':>14s} {'peak RSS MB':>12s} {'load':>5s}")  # fmt: skip
    for r in found.values():
        lines.append(
            f"{r['layout']:14s} {r['wall_s']:8.1f} {r['s_per_leapfrog'] * 1e3:9.2f}ms "
            f"{r['min_ess_bulk']:8.0f} {r['s_to_ess_1000']:14.1f} "
            f"{max(r['peak_rss_mb']):12.0f} {r['load_before']:5.1f}"
        )
    if args.baseline_rows:
        lines.append(f"peak RSS for the data (minus the same layout's run with "
                     f"{args.baseline_rows} rows), MB:")  # fmt: skip
        for r in found.values():
            lines.append(f"  {r['layout']:14s} {r['data_peak_rss_mb']:8.0f}")
        if "one_core" in found and "two_shards" in found:
            ratio = found["two_shards"]["data_peak_rss_mb"] / found["one_core"]["data_peak_rss_mb"]
            lines.append(f"  two_shards against one_core: {ratio:.2f} of it")
    for base in ("one_core", "both_cores"):
        if base in found and "two_shards" in found:
            a, b = found[base], found["two_shards"]
            lines.append(
                f"two_shards against {base}: per leapfrog "
                f"{a['s_per_leapfrog'] / b['s_per_leapfrog']:.2f}x faster, to ESS 1000 "
                f"{a['s_to_ess_1000'] / b['s_to_ess_1000']:.2f}x faster, peak RSS "
                f"{max(b['peak_rss_mb']) / max(a['peak_rss_mb']):.2f} of it"
            )
    if "chains_shards" in found and "chains_groups" in found:
        a, b = found["chains_shards"], found["chains_groups"]
        lines.append(
            f"2 chains, 2 shards x 1 group against 1 shard x 2 groups: draws per second "
            f"{a['draws_per_s'] / b['draws_per_s']:.2f}x"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "results.json").write_text(json.dumps(found, indent=1) + "\n")
    (args.out / "results.txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
