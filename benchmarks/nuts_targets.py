"""The default NUTS on the five test targets of ``hmc_targets.py``: what its early warmup end
costs or saves, counted in gradients (warmup included) and checked by ESS and R-hat.

    python benchmarks/nuts_targets.py --seeds 3,4 --windows 200,100 [--noise 1.5]

In-process, float64, 4 vmapped chains (each chain's own leapfrogs counted) of ``--tune`` (a
cap) + 1000 draws from uniform(-2, 2) starts. ``--windows`` sets ``nuts.CONVERGED_WINDOW``, the
shortest slow window after which a chain whose metric has settled ends its warmup (0: never,
Stan's full schedule), and ``--early-depths`` ``nuts.EARLY_DEPTH``, the tree depth cap before
the first metric update (0: none). For each it prints the warmup iterations run (mean
over chains), leapfrogs in warmup and in sampling per chain, min bulk and tail ESS, min bulk
ESS per 1000 gradients of the whole run (warmup included) and max rank R-hat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
jax.config.update("jax_enable_x64", True)

CHAINS, DRAWS = 4, 1000


def run(logdensity, dim: int, seed: int, window: int, early: int, tune: int, noise: float) -> dict:
    from mpi_pymc.diagnostics import maths as diagnostics
    from mpi_pymc.sampling import nuts

    nuts.CONVERGED_WINDOW = window if window > 0 else 10**9
    nuts.CONVERGED_NOISE = noise
    nuts.EARLY_DEPTH = early
    kernel = nuts.Nuts(lambda x, data: logdensity(x), tune=tune, target_accept=0.8, max_depth=10)
    keys = jax.random.split(jax.random.PRNGKey(seed), CHAINS)
    starts = jnp.asarray(np.random.default_rng(seed).uniform(-2, 2, (CHAINS, dim)))

    def chain(key, start):
        state = kernel.init(key, start, ())

        def warm(carry, _):
            s, iterations, steps = carry
            active = s.i < tune
            moved, _, stats = kernel.warmup_step(s, ())
            s = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), moved, s)
            return (s, iterations + active, steps + jnp.where(active, stats["n_steps"], 0)), None

        zero = jnp.zeros((), jnp.int32)
        state, iterations, warm_steps = jax.lax.scan(warm, (state, zero, zero), None, length=tune)[
            0
        ]

        def sample(s, _):
            s, position, stats = kernel.step(s, ())
            return s, (position, stats["n_steps"])

        return iterations, warm_steps, jax.lax.scan(sample, state, None, length=DRAWS)[1]

    iterations, warm_steps, (positions, steps) = jax.jit(jax.vmap(chain))(keys, starts)
    positions = np.asarray(positions)
    total = float(np.asarray(warm_steps).sum() + np.asarray(steps).sum())
    bulk = diagnostics.ess_bulk(positions).min()
    return {
        "warmup_iterations": float(np.asarray(iterations).mean()),
        "warmup_steps": float(np.asarray(warm_steps).mean()),
        "sampling_steps": float(np.asarray(steps).sum(axis=1).mean()),
        "bulk": bulk,
        "tail": diagnostics.ess_tail(positions).min(),
        "bulk_per_kgrad_total": 1000 * bulk / total,
        "rhat": diagnostics.rhat_rank(positions).max(),
    }


def main(argv: list[str] | None = None) -> int:
    from hmc_targets import targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="3,4")
    parser.add_argument("--windows", default="200,100", help="CONVERGED_WINDOW values; 0: off")
    parser.add_argument(
        "--early-depths", default="0,6", help="nuts.EARLY_DEPTH values (0: no early cap)"
    )
    parser.add_argument(
        "--noise", type=float, default=1.5, help="nuts.CONVERGED_NOISE (0: the fixed bound only)"
    )
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--targets", default="logit,diag,corr100,corr10,t5,eight")
    args = parser.parse_args(argv)
    table = targets()
    print(
        "| target | seed | window | early depth | warmup iterations "
        "| warmup leapfrogs/chain | sampling leapfrogs/chain | min bulk | min tail "
        "| bulk/1000 grad (all) | max R-hat |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.targets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for window, early in [
                (int(w), int(e))
                for w in args.windows.split(",")
                for e in args.early_depths.split(",")
            ]:
                r = run(*table[name], seed, window, early, args.tune, args.noise)
                print(
                    f"| {name} | {seed} | {window or 'off'} | {early or 'off'} | "
                    f"{r['warmup_iterations']:.0f} | "
                    f"{r['warmup_steps']:,.0f} | {r['sampling_steps']:,.0f} | {r['bulk']:,.0f} | "
                    f"{r['tail']:,.0f} | {r['bulk_per_kgrad_total']:.1f} | {r['rhat']:.3f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
