"""Cost of one NUTS leapfrog against one gradient, for the project's NUTS, numpyro's and blackjax's.

    python benchmarks/nuts_profile.py examples/logistic_regression.py [--chains 1]
        [--transitions 200] [--precision float64] [--graph ours|pytensor] [--json out.json]

Every kernel runs the same transitions setting: the step size and diagonal mass matrix a short
warmup of the project's NUTS adapted, ``max_tree_depth`` 10, from the same start. One jitted
``lax.scan`` of ``--transitions`` transitions per kernel (``vmap``-ed over ``--chains``), timed
after a first call compiled it; the leapfrogs are counted from each kernel's own statistics
(vectorized: the most over chains, per transition, as the batch waits for it). The reference is
a ``fori_loop`` of ``value_and_grad`` calls: what one leapfrog cannot avoid. Each figure is the
best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--transitions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--precision", default="float64", choices=("float64", "float32"))
    parser.add_argument("--kernels", default="gradient,nuts,numpyro,blackjax")
    parser.add_argument(
        "--graph",
        default="ours",
        choices=("ours", "pytensor"),
        help="the log-density with mpi_pymc's graph rewrites (ours) or PyTensor's JAX program "
        "as the numpyro path compiles it (pytensor)",
    )
    parser.add_argument("--json")
    return parser.parse_args(argv)


def _best(fn, repeats):
    fn()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None) -> dict:
    args = _parse(argv)
    import jax

    jax.config.update("jax_enable_x64", args.precision == "float64")
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.loading import load_model
    from mpi_pymc.sampling.nuts import Nuts, transition

    model = load_model(args.model)
    compiled = compile_model(model, args.precision, rewrites=args.graph == "ours")
    data = compiled.data
    logdensity = compiled.logdensity
    x0 = jnp.asarray(compiled.initial_flat)
    dtype = x0.dtype

    # Settings: a short warmup of the project's NUTS from the initial point.
    kernel = Nuts(logdensity, tune=args.tune, target_accept=0.8, max_depth=10)
    state = jax.jit(kernel.init)(jax.random.PRNGKey(0), x0, data)
    state = jax.jit(
        lambda s: jax.lax.fori_loop(0, args.tune, lambda i, s: kernel.warmup_step(s, data)[0], s)
    )(state)
    step_size = jnp.exp(state.log_step_size).astype(dtype)
    inv_mass = state.inverse_mass_matrix
    start = state.position
    starts = jnp.broadcast_to(start, (args.chains, start.size))
    keys = jax.random.split(jax.random.PRNGKey(1), args.chains)
    n = args.transitions
    value_and_grad = jax.value_and_grad(lambda x: logdensity(x, data))
    lp0, g0 = value_and_grad(start)

    def ours(key, x):
        def body(carry, k):
            x, lp, g = carry
            proposal, stats = transition(value_and_grad, k, x, lp, g, step_size, inv_mass, 10)
            return (proposal.x, proposal.logdensity, proposal.grad), stats["n_steps"]

        lp, g = value_and_grad(x)
        return jax.lax.scan(body, (x, lp, g), jax.random.split(key, n))[1]

    def numpyro_nuts(key, x):
        from numpyro.infer.hmc import hmc

        init_kernel, sample_kernel = hmc(potential_fn=lambda z: -logdensity(z, data), algo="NUTS")
        hmc_state = init_kernel(
            x,
            num_warmup=0,
            step_size=step_size,
            inverse_mass_matrix=inv_mass,
            adapt_step_size=False,
            adapt_mass_matrix=False,
            max_tree_depth=10,
            rng_key=key,
        )

        def body(s, _):
            s = sample_kernel(s)
            return s, s.num_steps

        return jax.lax.scan(body, hmc_state, None, length=n)[1]

    def blackjax_nuts(key, x):
        import blackjax

        nuts = blackjax.nuts(
            lambda z: logdensity(z, data), step_size=step_size, inverse_mass_matrix=inv_mass
        )

        def body(s, k):
            s, info = nuts.step(k, s)
            return s, info.num_integration_steps

        return jax.lax.scan(body, nuts.init(x), jax.random.split(key, n))[1]

    def gradients(key, x):
        def body(i, carry):
            x, total = carry
            lp, g = value_and_grad(x)
            return x + jnp.asarray(1e-12, dtype) * g, total + lp

        return jax.lax.fori_loop(0, n * 8, body, (x, jnp.zeros((), dtype)))[1]

    kernels = {"nuts": ours, "numpyro": numpyro_nuts, "blackjax": blackjax_nuts}
    result: dict = {
        "model": args.model,
        "dimension": int(compiled.dimension),
        "chains": args.chains,
        "transitions": n,
        "precision": args.precision,
        "graph": args.graph,
        "device": str(jax.devices()[0]),
        "step_size": float(step_size),
        "jax": jax.__version__,
        "env_model_size": {k: v for k, v in os.environ.items() if k.startswith("MPI_PYMC_")},
        "kernels": {},
    }
    wanted = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if "gradient" in wanted:
        run = jax.jit(jax.vmap(gradients))
        seconds, _ = _best(lambda: jax.block_until_ready(run(keys, starts)), args.repeats)
        per = seconds / (n * 8)
        result["gradient_ms"] = per * 1e3
        print(f"value_and_grad x {args.chains} chains: {per * 1e3:.3f} ms", flush=True)
    for name in [k for k in wanted if k in kernels]:
        if name != "nuts" and importlib.util.find_spec(name) is None:
            print(f"{name}: not installed, skipped", flush=True)
            continue
        run = jax.jit(jax.vmap(kernels[name]))
        seconds, steps = _best(
            lambda run=run: jax.block_until_ready(run(keys, starts)), args.repeats
        )
        steps = np.asarray(steps)  # (chains, n)
        lockstep = int(steps.max(axis=0).sum())
        record = {
            "seconds": seconds,
            "leapfrogs_per_transition": float(steps.mean()),
            "lockstep_leapfrogs": lockstep,
            "ms_per_leapfrog": seconds / lockstep * 1e3,
        }
        if "gradient_ms" in result:
            record["per_gradient"] = record["ms_per_leapfrog"] / result["gradient_ms"]
        result["kernels"][name] = record
        print(
            f"{name}: {record['ms_per_leapfrog']:.3f} ms per lockstep leapfrog "
            f"({record['leapfrogs_per_transition']:.1f} per transition"
            + (f", {record['per_gradient']:.2f} gradients" if "per_gradient" in record else "")
            + ")",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
