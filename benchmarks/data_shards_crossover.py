"""When do data shards pay? Time one log-density + gradient of the logistic example unsharded
against ``--data-shards S`` (``model.data_parallel``: a row shard per host device, a ``psum``
inside the program), over N rows. Issue #35 part 2: the README's "Data shards" crossover.

    python benchmarks/data_shards_crossover.py [--shards 2] [--rows 1000,10000,100000,1000000]

Runs itself once per N in a subprocess started with ``JAX_NUM_CPU_DEVICES=S``: the unsharded
program runs on device 0 (XLA's intra-op threads may use every core the process has, as a
rank's unsharded program does), the sharded one on S devices. Prints one JSON line per N: the
median seconds per call of each (jitted, 200 calls after warm-up) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D = 20


def _median_seconds(fn, *args, calls: int = 200) -> float:
    import jax
    import numpy as np

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(rows: int, shards: int) -> dict:
    os.environ.update(MPI_PYMC_N=str(rows), MPI_PYMC_D=str(D))
    sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
    import jax
    import numpy as np
    from logistic_regression import build_model

    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.data_parallel import data_parallel
    from mpi_pymc.model.row_shards import split_rows

    model = build_model()
    compiled = compile_model(model)
    point = np.asarray(compiled.initial_flat) + 0.1
    whole = jax.jit(jax.value_and_grad(compiled.logdensity))
    data = jax.device_put(compiled.data, jax.devices()[0])
    unsharded = _median_seconds(whole, point, data)
    logdensity, shard_data = data_parallel(split_rows(model, compiled, shards), jax.devices())
    sharded = _median_seconds(jax.jit(jax.value_and_grad(logdensity)), point, shard_data)
    return {
        "rows": rows, "features": D, "shards": shards, "devices": len(jax.devices()),
        "unsharded_seconds": unsharded, "sharded_seconds": sharded,
        "sharded_over_unsharded": sharded / unsharded, "load_average": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rows", default="1000,10000,100000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.shards)), flush=True)
        return
    environment = {**os.environ, "JAX_NUM_CPU_DEVICES": str(args.shards), "JAX_PLATFORMS": "cpu"}
    for rows in (int(r) for r in args.rows.split(",")):
        command = [sys.executable, __file__, "--shards", str(args.shards), "--one", str(rows)]
        proc = subprocess.run(command, env=environment, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        print(proc.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
