"""In-process NUTS runs of one model under variants of the metric's constants (issue 34): ESS per
gradient, which the machine's load does not change, to choose the buffer size and rank cap.

    python benchmarks/metric_variants.py glmm_lkj low_rank            # today's constants
    BUF=64 KMAX=16 python benchmarks/metric_variants.py glmm_lkj auto # another buffer and cap

The model is a file of ``benchmarks/models`` or ``examples`` (``build_model()`` or ``model``);
4 chains, one after another (no vmap), 1000 tune + 1000 draws, float64, seed ``SEED`` (0).
Prints each chain's final rank, the warmup and sampling gradients, the min bulk ESS over the
unconstrained coordinates, and it per 1,000 gradients (whole run and sampling alone).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "models"), str(ROOT / "examples")]
jax.config.update("jax_enable_x64", True)

from mpi_pymc.diagnostics import maths  # noqa: E402
from mpi_pymc.model.compile import compile_model  # noqa: E402
from mpi_pymc.sampling import metric  # noqa: E402
from mpi_pymc.sampling.nuts import Nuts  # noqa: E402


def main(name: str, kind: str) -> None:
    if os.environ.get("BUF"):
        metric.BUFFER_DRAWS = int(os.environ["BUF"])
    if os.environ.get("KMAX"):
        metric.K_MAX = int(os.environ["KMAX"])
    module = importlib.import_module(name)
    model = module.build_model() if hasattr(module, "build_model") else module.model
    compiled = compile_model(model)
    data = tuple(jnp.asarray(d) for d in compiled.data)
    kernel = Nuts(compiled.logdensity, tune=1000, target_accept=0.8, max_depth=10, metric=kind)

    def chain(key, start):
        state = kernel.init(key, start, data)
        state, warm = jax.lax.scan(
            lambda s, _: (lambda out: (out[0], out[2]["n_steps"]))(kernel.warmup_step(s, data)),
            state, None, 1000,
        )  # fmt: skip

        def sample(s, _):
            s, position, stats = kernel.step(s, data)
            return s, (position, stats["n_steps"])

        return state, warm, jax.lax.scan(sample, state, None, length=1000)[1]

    chains = int(os.environ.get("CHAINS", "4"))
    keys = jax.random.split(jax.random.PRNGKey(int(os.environ.get("SEED", "0"))), chains)
    d = compiled.dimension
    jitter = jax.random.uniform(jax.random.PRNGKey(1), (chains, d), minval=-1, maxval=1)
    starts = jnp.asarray(compiled.initial_flat) + jitter
    t0 = time.perf_counter()
    run = jax.jit(chain)
    outs = [run(k, s) for k, s in zip(keys, starts, strict=True)]
    warm = sum(int(o[1].sum()) for o in outs)
    sampling = sum(int(o[2][1].sum()) for o in outs)
    ess = float(np.min(maths.ess_bulk(np.stack([np.asarray(o[2][0]) for o in outs]))))
    ranks = [int(metric.rank(o[0].metric)) for o in outs]
    print(
        f"{name} {kind} buffer={metric.BUFFER_DRAWS} k_max={metric.K_MAX} "
        f"seconds={time.perf_counter() - t0:.1f} ranks={ranks} "
        f"warmup_gradients={warm} sampling_gradients={sampling} min_bulk_ess={ess:.0f} "
        f"ess_per_1k_gradients={1000 * ess / (warm + sampling):.2f} "
        f"sampling_only={1000 * ess / sampling:.2f}"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "auto")
