"""Cost of packing a shards output into one file (``mpi_pymc.output.packing.pack``), in
seconds per GB.

    python benchmarks/pack_cost.py --ranks 2 --chains 8 --draws 4000 --params 4000 --repeats 2

Each repeat launches ``mpirun -n R python benchmarks/pack_cost.py --worker ...``: every rank
writes its chains' synthetic draws through the real ``ShardWriter`` (the calls a run makes),
closes and fsyncs, leaving ``OUT`` with virtual datasets over ``OUT.parts/``, as a finished run
does. Then this process packs it, timed as a run's rank 0 would (the copy, its fsync, the rename
and the removal of the shards), and checks a few chains against the values read before. For
scale, a plain ``shutil.copyfile`` + fsync of the shards (what ``cp`` would cost) is timed on the
same files, and deflate (level 1, shuffle) is timed on a slab of the draws and of small integers
(the choice in ``packing._storage_options``). The shards were just written, so their reads come
from the page cache when they fit in memory, as at the end of a run. Prints a markdown table and
writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def worker(args) -> None:
    from mpi4py import MPI

    from mpi_pymc.core.seeding import chain_group
    from mpi_pymc.output import storage
    from mpi_pymc.output.layout import Layout, Variable, shard_dir

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    group = chain_group(args.chains, size, rank)
    layout = Layout(
        chains=args.chains,
        draws=args.draws,
        chunk_draws=args.chunk,
        coords={"p": np.arange(args.params)},
        draw_groups={
            "posterior": [Variable("x", ("p",), (args.params,), "float64")],
            "sample_stats": [
                Variable("lp", (), (), "float64"),
                Variable("diverging", (), (), "bool"),
                Variable("tree_depth", (), (), "int64"),
            ],
        },
    )
    rng = np.random.default_rng(rank)
    writer = storage.open_writer("shards", args.out, comm, layout, group, {"bench": 1})
    done = np.zeros(args.chains, dtype=np.int64)
    for start in range(0, args.draws, args.chunk):
        n = len(group)
        block = {
            ("posterior", "x"): rng.normal(size=(n, args.chunk, args.params)),
            ("sample_stats", "lp"): rng.normal(size=(n, args.chunk)),
            ("sample_stats", "diverging"): rng.random((n, args.chunk)) < 0.01,
            ("sample_stats", "tree_depth"): rng.integers(2, 6, size=(n, args.chunk)),
        }
        writer.write_chunk(start, block)
        done[:] = start + args.chunk
        writer.mark_completed(done)
    writer.close()
    for path in shard_dir(args.out).rglob(f"rank{rank:05d}.h5"):
        _fsync(path)
    comm.Barrier()
    if rank == 0:
        _fsync(Path(args.out))


def _spot_values(path: Path, chains: list[int]) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return {
            f"{g}/{v}": f[g][v][chains]
            for g in ("posterior", "sample_stats")
            for v in f[g]
            if not f[g][v].is_scale
        }


def copy_seconds(out: Path, scratch: Path) -> float:
    """Seconds to copy the shard files with shutil.copyfile and fsync them (``cp``-like)."""
    from mpi_pymc.output.layout import shard_dir

    t0 = time.perf_counter()
    for shard in sorted(shard_dir(str(out)).rglob("*.h5")):
        target = scratch / shard.name
        shutil.copyfile(shard, target)
        _fsync(target)
    seconds = time.perf_counter() - t0
    for target in scratch.glob("*.h5"):
        target.unlink()
    return seconds


def deflate_cost(directory: Path, rng: np.random.Generator) -> list[dict]:
    """Deflate level 1 + shuffle against no filter, on 256 MiB of float64 normal draws and of
    small int64 values (tree depths): ratio and seconds."""
    import h5py

    rows = []
    slabs = {
        "float64 draws": rng.normal(size=(8, 4096, 1024)),
        "int64 tree_depth": rng.integers(2, 6, size=(8, 4096, 1024)),
    }
    for name, data in slabs.items():
        for filters in ({}, {"compression": "gzip", "compression_opts": 1, "shuffle": True}):
            path = directory / "deflate.h5"
            t0 = time.perf_counter()
            with h5py.File(path, "w") as f:
                f.create_dataset("x", data=data, chunks=(1, 512, 1024), **filters)
            _fsync(path)
            seconds = time.perf_counter() - t0
            rows.append({
                "data": name, "filter": "gzip1+shuffle" if filters else "none",
                "bytes": data.nbytes, "file_bytes": path.stat().st_size, "seconds": seconds,
            })  # fmt: skip
            path.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--params", type=int, default=4000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", default=None, help="directory to write in (default: a tmp dir)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0

    import h5py

    from mpi_pymc.core.mpi_env import local_mpi_env, mpirun_command
    from mpi_pymc.output import packing

    points = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        for repeat in range(args.repeats):
            out = Path(tmp) / f"pack{repeat}.h5"
            cmd = mpirun_command(args.ranks, [
                __file__, "--worker", "--out", str(out), "--chains", str(args.chains),
                "--draws", str(args.draws), "--params", str(args.params),
                "--chunk", str(args.chunk),
            ])  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(
                cmd, env=local_mpi_env(), capture_output=True, text=True, timeout=1200
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            write_seconds = time.perf_counter() - t0
            copy = copy_seconds(out, scratch)
            spots = [0, args.chains - 1]
            before = _spot_values(out, spots)
            result = packing.pack(out, max_bytes=None)
            after = _spot_values(out, spots)
            if result.state != "packed" or any(
                not np.array_equal(before[k], after[k]) for k in before
            ):
                print(f"packing went wrong: {result}", file=sys.stderr)
                return 1
            points.append({
                "repeat": repeat, "load_average": os.getloadavg()[0],
                "data_bytes": result.data_bytes,
                "file_bytes": result.file_bytes, "pack_seconds": result.seconds,
                "copy_seconds": copy, "write_seconds_with_launch": write_seconds,
            })  # fmt: skip
            out.unlink()
        deflate = deflate_cost(scratch, np.random.default_rng(0))
    print(f"{platform.node()}, {os.cpu_count()} cores; h5py {h5py.__version__}, HDF5 "
          f"{h5py.version.hdf5_version}; {args.ranks} ranks wrote {args.chains} chains x "
          f"{args.draws} draws x {args.params} float64 (+ lp, diverging, tree_depth)")  # fmt: skip
    print("| repeat | load avg | GB of draws | pack s | pack s/GB | shards copyfile+fsync s/GB |")
    print("|---|---|---|---|---|---|")
    for p in points:
        gb = p["data_bytes"] / 1e9
        p.update(pack_s_per_gb=p["pack_seconds"] / gb, copy_s_per_gb=p["copy_seconds"] / gb)
        print(f"| {p['repeat']} | {p['load_average']:.1f} | {gb:.3f} | {p['pack_seconds']:.2f} | "
              f"{p['pack_s_per_gb']:.2f} | {p['copy_s_per_gb']:.2f} |")  # fmt: skip
    rates = sorted(p["pack_s_per_gb"] for p in points)
    print(
        f"\npacking: median {float(np.median(rates)):.2f} s/GB (min {rates[0]:.2f}, max "
        f"{rates[-1]:.2f}) over {len(rates)} repeats"
    )
    print()
    print("| data (256 MiB) | filter | stored / raw | s/GB written |")
    print("|---|---|---|---|")
    for row in deflate:
        print(f"| {row['data']} | {row['filter']} | {row['file_bytes'] / row['bytes']:.3f} | "
              f"{row['seconds'] / (row['bytes'] / 1e9):.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"points": points, "deflate": deflate}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
