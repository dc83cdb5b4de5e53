"""Write throughput of the HDF5 writers (mpio, shards) at 1/2/4 ranks vs a plain sequential write.

    python benchmarks/write_bench.py --ranks 1,2,4 --chains 8 --draws 4000 --params 500

Each point launches ``mpirun -n R python benchmarks/write_bench.py --worker ...``: every rank
writes its chains' synthetic draws chunk by chunk through the real writer (the same calls the
sampler makes, progress collective included), closes, and fsyncs its files. The baseline writes
the same number of bytes from one process in 4 MiB blocks and fsyncs (what ``dd`` measures).
Prints a markdown table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
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
            "sample_stats": [Variable("lp", (), (), "float64")],
        },
    )
    rng = np.random.default_rng(rank)
    block = {
        ("posterior", "x"): rng.normal(size=(len(group), args.chunk, args.params)),
        ("sample_stats", "lp"): rng.normal(size=(len(group), args.chunk)),
    }
    comm.Barrier()
    t0 = time.perf_counter()
    writer = storage.open_writer(args.io, args.out, comm, layout, group, {"bench": 1})
    done = np.zeros(args.chains, dtype=np.int64)
    for start in range(0, args.draws, args.chunk):
        writer.write_chunk(start, block)
        done[:] = start + args.chunk
        comm.allgather(len(group))
        writer.mark_completed(done)
    writer.close()
    if args.io == "shards":
        for path in shard_dir(args.out).rglob("*.h5"):
            if path.name == f"rank{rank:05d}.h5":
                _fsync(path)
    if rank == 0:
        _fsync(Path(args.out))
    comm.Barrier()
    seconds = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    if rank == 0:
        nbytes = args.chains * args.draws * (args.params + 1) * 8
        print(json.dumps({"io": args.io, "ranks": size, "bytes": nbytes, "seconds": seconds}))


def sequential_baseline(nbytes: int, directory: str) -> float:
    """Seconds to write ``nbytes`` sequentially in 4 MiB blocks and fsync (dd-like)."""
    block = np.random.default_rng(0).bytes(4 << 20)
    path = Path(directory) / "dd.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--io", default="shards")
    parser.add_argument("--out")
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--params", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--dir", default=None, help="directory to write in (default: a tmp dir)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0

    import h5py

    from mpi_pymc.core.mpi_env import local_mpi_env, mpirun_command

    writers = ["shards"] + (["mpio"] if h5py.get_config().mpi else [])
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for ranks in (int(r) for r in args.ranks.split(",")):
            for io in writers:
                out = Path(tmp) / f"{io}{ranks}.h5"
                cmd = mpirun_command(ranks, [
                    __file__, "--worker", "--io", io, "--out", str(out), "--chains",
                    str(args.chains), "--draws", str(args.draws), "--params", str(args.params),
                    "--chunk", str(args.chunk),
                ])  # fmt: skip
                proc = subprocess.run(
                    cmd, env=local_mpi_env(), capture_output=True, text=True, timeout=600
                )
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 1
                point = json.loads(proc.stdout.strip().splitlines()[-1])
                point["baseline_seconds"] = sequential_baseline(point["bytes"], tmp)
                results.append(point)
    print(f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, MPI-enabled: "
          f"{bool(h5py.get_config().mpi)}; {args.chains} chains x {args.draws} draws x "
          f"{args.params + 1} values, chunks of {args.chunk} draws")  # fmt: skip
    print("| writer | ranks | MB | writer MB/s | sequential dd-style MB/s | ratio |")
    print("|---|---|---|---|---|---|")
    for p in results:
        mb = p["bytes"] / 1e6
        rate, base = mb / p["seconds"], mb / p["baseline_seconds"]
        p.update(writer_mb_s=rate, baseline_mb_s=base)
        print(f"| {p['io']} | {p['ranks']} | {mb:.0f} | {rate:.0f} | {base:.0f} | "
              f"{rate / base:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
