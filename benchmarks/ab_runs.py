"""Whole runs of two source trees side by side: the same `mpirun -n R python -m mpi_pymc run`
on the same model file and seeds, A and B alternating seed by seed, cold compile cache.

    python benchmarks/ab_runs.py --trees /work/main,/tmp/wt-b --seeds 7,1,2 \
        [--env MPI_PYMC_N=50000 --env MPI_PYMC_D=20] [--ranks 2] MODEL.py [-- EXTRA RUN ARGS]

(the model after this script's own options: argparse reads nothing after ``--`` as options.)

A "tree" is a checkout of this repository (a `git worktree`); its `mpi_pymc` is the one
imported, as `python -m` puts the working directory first. For every run it prints the wall
time, the phases the file records, min bulk / tail ESS, min bulk ESS per wall second and max
R-hat, and at the end the per-tree geometric means over the seeds. For choosing a change by
measurement; `bench baseline` gives the side-by-side with PyMC's samplers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpi_pymc.bench.launching import read_output_attrs  # noqa: E402
from mpi_pymc.core.mpi_env import local_mpi_env  # noqa: E402


def one_run(tree: str, model: str, seed: int, ranks: int, env: dict, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.h5")
        # What `python -m mpi_pymc.launch` and `bench` give the ranks (mpi_pymc/launch.py).
        run_env = local_mpi_env({**os.environ, **env})
        run_env["MPI_PYMC_JAX_CACHE"] = os.path.join(tmp, "cache")
        mpirun = str(Path(sys.executable).parent / "mpirun")
        command = [mpirun, "-n", str(ranks), sys.executable, "-m", "mpi_pymc", "run"]
        command += [str(Path(model).resolve()), "--out", out, "--seed", str(seed), *extra]
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=run_env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            return {"tree": tree, "seed": seed, "error": done.stderr.strip().splitlines()[-1:]}
        attrs = read_output_attrs(out)
    diag = attrs.get("diagnostics") or {}
    timings = attrs.get("timings") or {}
    bulk, tail = (min(diag[key]) if diag.get(key) else None for key in ("ess_bulk", "ess_tail"))
    return {
        "tree": tree,
        "seed": seed,
        "wall": round(wall, 2),
        "min_ess_bulk": bulk,
        "min_ess_tail": tail,
        "ess_per_second": bulk / wall if bulk else None,
        "max_r_hat": max(diag["r_hat"]) if diag.get("r_hat") else None,
        "timings": {key: round(value, 2) for key, value in timings.items()},
        # Each rank's warmup and sampling seconds: the ranks wait for the slowest.
        "rank_phases": [
            [round(r.get("warmup", 0), 2), round(r.get("sampling", 0), 2)]
            for r in attrs.get("rank_timings") or []
        ],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--trees", required=True, help="comma-separated source trees (A,B,...)")
    parser.add_argument("--seeds", default="20261127")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", help="append every run as a JSON line to this file")
    parser.add_argument("extra", nargs="*", help="further `mpi_pymc run` arguments (after --)")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    trees = args.trees.split(",")
    records = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for tree in trees:
            record = one_run(tree, args.model, seed, args.ranks, env, args.extra)
            records.append(record)
            print(json.dumps(record), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({**record, "env": env, "model": args.model}) + "\n")
    for tree in trees:
        rates = [
            r["ess_per_second"] for r in records if r["tree"] == tree and r.get("ess_per_second")
        ]
        walls = [r["wall"] for r in records if r["tree"] == tree and "wall" in r]
        if rates:
            geo = math.exp(sum(math.log(x) for x in rates) / len(rates))
            print(
                f"{tree}: geometric mean {geo:.1f} ESS/s over {len(rates)} runs, "
                f"mean wall {sum(walls) / len(walls):.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
