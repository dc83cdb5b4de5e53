"""The hmc kernel on five test targets: ESS per gradient, each chain adapting alone or pooled.

    python benchmarks/hmc_targets.py --seeds 3,4 --groups 1,4

In-process, float64, 4 vectorized chains of 1000 warmup + 1000 draws from uniform(-2, 2)
starts. Targets: a diagonal Gaussian with scales 0.1 to 10 (D=20); rotated Gaussians with
condition numbers 10 and 100 (D=50); a Student-t with 5 degrees of freedom and scales 1 to 5
(D=20); non-centred eight schools (D=10); ``logit``, a logistic regression (D=20, not run by
default here). For each it prints leapfrogs per draw, min bulk and tail ESS, the same per 1000
gradients (all chains' leapfrogs), min bulk ESS of the squares per 1000 gradients, and max
rank R-hat. Group sizes must divide the 4 chains.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

CHAINS, TUNE, DRAWS = 4, 1000, 1000


def targets() -> dict:
    rng = np.random.default_rng(11)
    out = {}
    sds = np.logspace(-1, 1, 20)
    out["diag"] = (lambda x: -0.5 * jnp.sum((x / sds) ** 2), 20)
    for name, top in (("corr100", 10.0), ("corr10", np.sqrt(10.0))):
        q, _ = np.linalg.qr(rng.normal(size=(50, 50)))
        precision = jnp.asarray(q @ np.diag(1 / np.logspace(0, np.log10(top), 50) ** 2) @ q.T)
        out[name] = ((lambda p: lambda x: -0.5 * x @ (p @ x))(precision), 50)
    scales = np.linspace(1, 5, 20)
    out["t5"] = (lambda x: jnp.sum(-3.0 * jnp.log1p((x / scales) ** 2 / 5.0)), 20)
    y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
    s = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])

    def eight(x):  # (mu, log tau, theta_tilde[8]), non-centred
        mu, log_tau, tilde = x[0], x[1], x[2:]
        tau = jnp.exp(log_tau)
        prior = -0.5 * (mu / 5) ** 2 - jnp.log1p((tau / 5) ** 2) + log_tau - 0.5 * tilde @ tilde
        return prior - 0.5 * jnp.sum(((y - mu - tau * tilde) / s) ** 2)

    out["eight"] = (eight, 10)

    # A logistic regression (N=5,000, D=20, standard normal prior) on synthetic data: the
    # posterior shape of the example model, small enough to run in seconds.
    design = rng.normal(size=(5000, 20))
    truth = 0.5 * rng.normal(size=20)
    outcome = (rng.uniform(size=5000) < 1 / (1 + np.exp(-design @ truth))).astype(float)

    def logit(b):
        eta = design @ b
        return -0.5 * b @ b + jnp.sum(outcome * eta - jnp.logaddexp(0.0, eta))

    out["logit"] = (logit, 20)
    return out


def run(logdensity, dim: int, seed: int, group: int) -> dict:
    from mpi_pymc.diagnostics import maths as diagnostics
    from mpi_pymc.sampling.chain_group import vmap_chains
    from mpi_pymc.sampling.hmc import AdaptiveHmc

    kernel = AdaptiveHmc(lambda x, data: logdensity(x), TUNE, 0.8, max_steps=1024, group_size=group)

    keys = jax.random.split(jax.random.PRNGKey(seed), CHAINS)
    starts = jnp.asarray(np.random.default_rng(0).uniform(-2, 2, (CHAINS, dim)))
    state = vmap_chains(kernel.init, (0, 0, None), group)(keys, starts, ())

    def chain(state):
        state = jax.lax.scan(
            lambda s, _: (kernel.warmup_step(s, ())[0], None), state, None, length=TUNE
        )[0]

        def sample(s, _):
            s, position, stats = kernel.step(s, ())
            return s, (position, stats["n_steps"])

        return jax.lax.scan(sample, state, None, length=DRAWS)[1]

    positions, steps = jax.jit(vmap_chains(chain, (0,), group))(state)
    positions = np.asarray(positions)
    gradients = float(np.asarray(steps).sum())
    bulk = diagnostics.ess_bulk(positions).min()
    tail = diagnostics.ess_tail(positions).min()
    return {
        "steps_per_draw": gradients / (CHAINS * DRAWS),
        "bulk": bulk,
        "tail": tail,
        "bulk_per_kgrad": 1000 * bulk / gradients,
        "tail_per_kgrad": 1000 * tail / gradients,
        "square_per_kgrad": 1000 * diagnostics.ess_bulk(positions**2).min() / gradients,
        "rhat": diagnostics.rhat_rank(positions).max(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="3,4")
    parser.add_argument("--groups", default="1,4", help="adaptation group sizes (divide 4)")
    parser.add_argument("--targets", default="diag,corr100,corr10,t5,eight")
    args = parser.parse_args(argv)
    table = targets()
    print(
        "| target | seed | group | steps/draw | min bulk | min tail | bulk/1000 grad | "
        "tail/1000 grad | squares bulk/1000 grad | max R-hat |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.targets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for group in [int(g) for g in args.groups.split(",")]:
                r = run(*table[name], seed, group)
                print(
                    f"| {name} | {seed} | {group} | {r['steps_per_draw']:.2f} | {r['bulk']:,.0f} "
                    f"| {r['tail']:,.0f} | {r['bulk_per_kgrad']:.1f} | {r['tail_per_kgrad']:.1f} "
                    f"| {r['square_per_kgrad']:.1f} | {r['rhat']:.3f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
