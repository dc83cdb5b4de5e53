"""How long a run's programs take to compile, pinned to a core or not (issue 34: the auto metric's
compile time is what is left against it on small posteriors).

    python benchmarks/compile_pinning.py benchmarks/models/horseshoe.py [--metric auto]

Four measurements, each in fresh processes with an empty cache and the XLA flags a pinned CPU
rank runs with (``core/topology.bind``): the warmup program alone pinned to core 0 and unpinned;
then the pair a 2-rank run compiles at once (one process the warmup program, the other the
sampling programs), started at the same instant, pinned to cores 0 and 1 and unpinned. Prints
the seconds each compile took. Run it on an otherwise idle machine of at least 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINNED_RANK_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

WORKER = """
import importlib.util, sys, time
import jax
jax.config.update("jax_enable_x64", True)
from mpi_pymc.core.config import RunConfig
from mpi_pymc.model.compile import compile_model
from mpi_pymc.sampling.chain_group import ChainGroupSampler
path, metric, names, start = sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4])
spec = importlib.util.spec_from_file_location("model_file", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.model if hasattr(module, "model") else module.build_model()
compiled = compile_model(model, "float64")
config = RunConfig(model_path=path, chains=2, tune=1000, draws=1000, chunk_draws=100,
                   metric=metric).replace(chain_method="sequential")
sampler = ChainGroupSampler(compiled, config)
abstract = sampler.abstract_state(2)
while time.time() < start:
    time.sleep(0.01)
t0 = time.perf_counter()
sampler.precompile(abstract, names, abstract=True, chains=2)
print(f"{time.perf_counter() - t0:.2f}")
"""


def _compile(jobs: list[tuple[str, int | None]], model: str, metric: str) -> list[float]:
    """Start one process per (programs, core or None) at the same instant; their seconds."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": PINNED_RANK_FLAGS,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    start = time.time() + 15  # after every process has imported and traced
    procs = []
    for names, core in jobs:
        cmd = [sys.executable, "-c", WORKER, model, metric, names, str(start)]
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    return [float(proc.communicate()[0].split()[-1]) for proc in procs]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--metric", default="auto")
    args = parser.parse_args(argv)
    sampling = "sample,sample_diag" if args.metric in ("auto", "low_rank") else "sample"
    rows = [
        ("warmup alone, pinned to core 0", [("warmup", 0)]),
        ("warmup alone, unpinned", [("warmup", None)]),
        ("warmup and sampling at once, pinned to cores 0 and 1", [("warmup", 0), (sampling, 1)]),
        ("warmup and sampling at once, unpinned", [("warmup", None), (sampling, None)]),
    ]
    print(f"{args.model}, --metric {args.metric}: seconds to compile")
    for label, jobs in rows:
        seconds = _compile(jobs, args.model, args.metric)
        print(f"  {label}: " + ", ".join(f"{s:.2f}" for s in seconds))


if __name__ == "__main__":
    main()
