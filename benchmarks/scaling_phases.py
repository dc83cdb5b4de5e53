"""Per-rank time of every phase of a run, from 1 to N (oversubscribed) ranks.

    python benchmarks/scaling_phases.py [--ranks 1,2,4,8,16] [--model examples/eight_schools.py]
        [--draws 200] [--tune 200] [--chunk-draws 50] [--outdir benchmarks/results/cpu/scaling]

One chain per rank, each rank count in its own job with a cold JAX compile cache. Every rank's
phase timings come from the output's ``rank_timings`` attribute (``checkpoint_writes`` is the
part of warmup and io spent writing checkpoints). On a machine with fewer cores than ranks the
compute phases grow with the oversubscription; the point is how the phases that talk to other
ranks or to shared files grow (see "Scaling to 1,000 ranks" in benchmarks/README.md).
Writes ``scaling.json`` and ``scaling.md`` into ``--outdir``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("startup", "load_model", "compile", "init", "jit", "warmup", "sampling", "io",
          "checkpoint_writes", "diagnostics", "total")  # fmt: skip


def _run(ranks: int, args: argparse.Namespace, tmp: Path) -> dict:
    import h5py

    from mpi_pymc.core.mpi_env import find_mpirun, local_mpi_env

    out = tmp / f"r{ranks}.h5"
    env = local_mpi_env()
    env["MPI_PYMC_JAX_CACHE"] = str(tmp / f"cache{ranks}")  # cold for every rank count
    cmd = [find_mpirun(), "-n", str(ranks), sys.executable, "-m", "mpi_pymc", "run",
           str(args.model), "--chains", str(ranks), "--draws", str(args.draws), "--tune",
           str(args.tune), "--chunk-draws", str(args.chunk_draws), "--seed", "1", "--out",
           str(out), "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{ranks} ranks failed:\n{proc.stderr[-2000:]}")
    with h5py.File(out) as f:
        per_rank = json.loads(f.attrs["rank_timings"])
    return {"ranks": ranks, "wall_seconds": wall, "rank_timings": per_rank}


def _table(points: list[dict]) -> str:
    lines = [
        "| ranks | wall s | " + " | ".join(PHASES) + " |",
        "|---|---|" + "---|" * len(PHASES),
    ]
    for p in points:
        cells = []
        for phase in PHASES:
            values = [t.get(phase, 0.0) for t in p["rank_timings"]]
            low, high = min(values), max(values)
            cells.append(f"{high:.2f}" if high - low < 0.005 else f"{low:.2f}-{high:.2f}")
        lines.append(f"| {p['ranks']} | {p['wall_seconds']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4,8,16")
    parser.add_argument("--model", default=str(ROOT / "examples" / "eight_schools.py"))
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--chunk-draws", type=int, default=50)
    parser.add_argument("--outdir", default=str(ROOT / "benchmarks/results/cpu/scaling"))
    args = parser.parse_args(argv)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in [int(r) for r in args.ranks.split(",")]:
            points.append(_run(ranks, args, Path(tmp)))
            print(_table(points[-1:]).splitlines()[-1], flush=True)
    settings = {k: getattr(args, k) for k in ("model", "draws", "tune", "chunk_draws")}
    (outdir / "scaling.json").write_text(json.dumps({"settings": settings, "points": points}))
    table = _table(points)
    (outdir / "scaling.md").write_text(
        f"Per-rank phase seconds (min-max over ranks), {settings}\n\n{table}\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
