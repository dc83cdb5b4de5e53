"""How much do ranks sharing a node slow each other down? Gradients alone vs side by side.

    python benchmarks/contention.py MODEL.py [--chains 2] [--processes 1,2] [--repeats 3] [--pin]

For each process count P, starts P processes at once, each with one XLA thread (and, with
``--pin``, pinned to its own core by ``taskset``), each timing the model's log-density gradient
for ``--chains`` vmapped chains (one compiled loop of ``--iterations`` gradients). Prints one
JSON line per P with the median milliseconds per gradient of each process, and the slowdown
against P = 1. A slowdown well above 1 means the processes compete for something they share
(memory bandwidth, last-level cache, or, pinned, the one core that also runs JAX's runtime
threads): a limit of weak scaling on that node that no change to start-up, compile or I/O
removes. Model size from the model file (for the example, ``MPI_PYMC_N``/``MPI_PYMC_D``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(model: str, chains: int, iterations: int, repeats: int) -> None:
    """One process: time ``iterations`` vmapped gradients, ``repeats`` times; print JSON."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.loading import load_model

    jax.config.update("jax_enable_x64", True)
    path, _, name = model.partition(":")
    compiled = compile_model(load_model(path, name or None), "float64")
    grad = jax.vmap(jax.grad(compiled.logdensity), in_axes=(0, None))
    start = jnp.asarray(np.tile(compiled.initial_flat, (chains, 1)))

    @jax.jit
    def loop(x, data):
        return jax.lax.fori_loop(0, iterations, lambda i, c: c + 1e-12 * grad(c, data), x)

    loop(start, compiled.data).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loop(start, compiled.data).block_until_ready()
        times.append((time.perf_counter() - t0) / iterations * 1000)
    print(json.dumps({"ms_per_gradient": statistics.median(times), "all": times}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL.py[:NAME]")
    parser.add_argument("--chains", type=int, default=2, help="vmapped chains per process (2)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare (1,2)")
    parser.add_argument("--iterations", type=int, default=1000, help="gradients per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per process (median)")
    parser.add_argument("--pin", action="store_true", help="pin process i to core i (taskset)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.model, args.chains, args.iterations, args.repeats)
        return 0
    cores = sorted(os.sched_getaffinity(0))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    base = None
    for count in (int(p) for p in args.processes.split(",")):
        if count > len(cores):
            print(json.dumps({"processes": count, "skipped": f"only {len(cores)} cores"}))
            continue
        settings = ["--chains", str(args.chains), "--iterations", str(args.iterations),
                    "--repeats", str(args.repeats)]  # fmt: skip
        command = [sys.executable, __file__, args.model, "--worker", *settings]
        procs = [
            subprocess.Popen(
                (["taskset", "-c", str(cores[i])] if args.pin else []) + command,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            for i in range(count)
        ]
        per_process = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        ms = [r["ms_per_gradient"] for r in per_process]
        base = base or statistics.mean(ms)
        print(json.dumps({
            "processes": count, "pinned": args.pin, "chains_per_process": args.chains,
            "ms_per_gradient": ms,
            "slowdown_vs_one": statistics.mean(ms) / base,
            "model_env": {k: v for k, v in os.environ.items() if k.startswith("MPI_PYMC_")},
        }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
