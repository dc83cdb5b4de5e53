"""Time of the summary diagnostics (``all_diagnostics``, what a run computes at its end and at
every ``--until-ess`` check) for source trees side by side, on the same draws.

    python benchmarks/diagnostics_time.py --trees /tmp/wt-before,/work/main \
        [--shapes 1024x500x55,64x300x55,4x1000x21] [--repeats 3] [--threads 0]

A "tree" is a checkout of this repository; each one is timed in its own process with that
tree first on ``sys.path``. The draws are an AR(1)-like series plus noise, the same for every
tree (seeded), float64. ``--threads N`` pins each process to its first N cores
(``sched_setaffinity``; 0: as launched), since the diagnostics spread parameters over the
cores a rank may use. Prints, per shape, each tree's best time and the largest relative
difference of its statistics from the first tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np
threads = int(sys.argv[3])
if threads:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
from mpi_pymc.diagnostics import maths as diagnostics
shape = tuple(int(n) for n in sys.argv[1].split("x"))
rng = np.random.default_rng(20261206)
draws = (0.1 * rng.standard_normal(shape).cumsum(axis=1) + rng.standard_normal(shape))
halves = [shape[0] // 2, shape[0] - shape[0] // 2] if shape[0] > 1 else [1]
seconds = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    stats = diagnostics.all_diagnostics(draws, superchain_sizes=halves)
    seconds.append(time.perf_counter() - t0)
print(json.dumps({"seconds": seconds, "stats": {k: v.tolist() for k, v in stats.items()},
                  "module": diagnostics.__file__}))
"""


def time_tree(tree: str, shape: str, repeats: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, shape, str(repeats), str(threads)],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_difference(ours: dict, first: dict) -> float:
    worst = 0.0
    for key, values in first.items():
        for a, b in zip(ours.get(key, []), values, strict=False):
            if a == a and b == b and a != b:  # both not NaN and different
                worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", required=True, help="comma-separated checkouts")
    parser.add_argument("--shapes", default="1024x500x55,64x300x55,4x1000x21")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    trees = args.trees.split(",")
    print("| shape (chains x draws x parameters) | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for shape in args.shapes.split(","):
        results = [time_tree(tree, shape, args.repeats, args.threads) for tree in trees]
        cells = []
        for result in results:
            difference = largest_difference(result["stats"], results[0]["stats"])
            cells.append(f"{min(result['seconds']):.3f} s (max rel. diff {difference:.1e})")
        print(f"| {shape} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
