"""hmc with many vectorized chains: each chain adapting alone against adaptation groups.

    python benchmarks/adapt_group.py --chains 256 --tune 300 --draws 300 --groups 1,16,256

Runs the hmc kernel in-process on one core-set (no MPI, no files), the chains vmapped as a rank
runs them, on examples/logistic_regression.py (MPI_PYMC_N / MPI_PYMC_D as set, default
N=5,000, D=54, float32 as on a GPU). For each group size it reports, over warmup and over
sampling, the lockstep leapfrogs (per iteration the most any chain took, summed: what a
vectorized step costs) and the mean over chains; the minimum bulk and tail ESS and the maximum
R-hat; and wall seconds of warmup and sampling with compile excluded. Same seed, same starts for
every group size.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
from pathlib import Path

os.environ.setdefault("MPI_PYMC_N", "5000")
os.environ.setdefault("MPI_PYMC_D", "54")

MODEL = Path(__file__).resolve().parent.parent / "examples" / "logistic_regression.py"


def run_one(compiled, chains: int, tune: int, draws: int, group: int, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.diagnostics import maths as diagnostics
    from mpi_pymc.sampling.chain_group import vmap_chains
    from mpi_pymc.sampling.hmc import MEASURE_EVERY, AdaptiveHmc

    kernel = AdaptiveHmc(compiled.logdensity, tune, 0.8, 1024, group_size=group)

    def scan(step, length):
        def run(state, data):
            return jax.lax.scan(lambda s, _: step(s, data), state, None, length=length)

        return jax.jit(vmap_chains(run, (0, None), group))

    def warm(state, data):
        # kernel.warmup_step, unrolled to count the leapfrogs of a U-turn run-on as well.
        measure = state.i % MEASURE_EVERY == 0
        moved, stats, uturn_time = kernel.transition(state, data, measure=measure)
        new = kernel.adapt(state, moved, stats["acceptance_rate"], uturn_time, measure)
        run_on = jnp.where(measure, jnp.round(uturn_time / stats["step_size"]), 0)
        return new, jnp.maximum(stats["n_steps"], run_on.astype(stats["n_steps"].dtype))

    def sample(state, data):
        new, position, stats = kernel.step(state, data)
        return new, (position, stats["n_steps"])

    start = compiled.initial_flat
    jitter = np.random.default_rng(seed).uniform(-1, 1, (chains, start.size))
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    data = compiled.data
    state = jax.jit(vmap_chains(kernel.init, (0, 0, None), group))(
        keys, jnp.asarray((start + jitter).astype(start.dtype)), data
    )
    warmup = scan(warm, tune).lower(state, data).compile()
    t0 = time.perf_counter()
    state, warm_steps = jax.block_until_ready(warmup(state, data))
    t1 = time.perf_counter()
    sampling = scan(sample, draws).lower(state, data).compile()
    t2 = time.perf_counter()
    state, (positions, steps) = jax.block_until_ready(sampling(state, data))
    t3 = time.perf_counter()
    positions, steps, warm_steps = map(np.asarray, (positions, steps, warm_steps))
    return {
        "group": group,
        "warmup_lockstep": int(warm_steps.max(axis=0).sum()),
        "warmup_mean": float(warm_steps.mean(axis=0).sum()),
        "sampling_lockstep": int(steps.max(axis=0).sum()),
        "sampling_mean": float(steps.mean(axis=0).sum()),
        "min_bulk_ess": float(diagnostics.ess_bulk(positions).min()),
        "min_tail_ess": float(diagnostics.ess_tail(positions).min()),
        "max_rhat": float(diagnostics.rhat_rank(positions).max()),
        "warmup_s": t1 - t0,
        "sampling_s": t3 - t2,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--groups", default="1,16,256", help="group sizes, comma separated")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from mpi_pymc.model.compile import compile_model

    compiled = compile_model(runpy.run_path(str(MODEL))["build_model"](), args.precision)
    print(
        f"logistic regression N={os.environ['MPI_PYMC_N']} D={os.environ['MPI_PYMC_D']}, "
        f"{args.chains} vectorized chains, {args.tune}+{args.draws}, {args.precision}, "
        f"seed {args.seed}, {os.cpu_count()} cores\n"
    )
    print(
        "| group | warmup lockstep (mean) | sampling lockstep (mean) | min bulk ESS | "
        "min tail ESS | max R-hat | warmup s | sampling s | bulk ESS per sampling s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for group in [int(g) for g in args.groups.split(",")]:
        r = run_one(compiled, args.chains, args.tune, args.draws, group, args.seed)
        print(
            f"| {group} | {r['warmup_lockstep']:,} ({r['warmup_mean']:,.0f}) | "
            f"{r['sampling_lockstep']:,} ({r['sampling_mean']:,.0f}) | {r['min_bulk_ess']:,.0f} | "
            f"{r['min_tail_ess']:,.0f} | {r['max_rhat']:.3f} | {r['warmup_s']:.1f} | "
            f"{r['sampling_s']:.1f} | {r['min_bulk_ess'] / r['sampling_s']:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
