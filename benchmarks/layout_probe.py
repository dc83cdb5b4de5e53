"""How should a CPU node run K NUTS chains? Leapfrogs per second of the project's NUTS, same
transitions, in several process layouts.

    python benchmarks/layout_probe.py examples/logistic_regression.py --chains 4 \
        --layouts ranks,sequential,threads,pmap [--transitions 100] [--json out.json]

Every layout runs the same per-chain program (one jitted ``lax.scan`` of ``--transitions``
transitions at the step size and mass matrix a short warmup adapted, from the same start):

- ``ranks``: one process per core, each pinned to its core (``taskset``), chains split evenly
  and run one after another, as ``mpirun -n CORES`` with ``--chain-method sequential`` runs them;
- ``ranks-pmap``: the same pinned processes, each running its chains by ``pmap`` over host
  devices; ``ranks-free`` and ``ranks-free-pmap``: the same, unpinned;
- ``sequential``: one unpinned process, chains one after another;
- ``threads``: one unpinned process, one Python thread per chain (XLA releases the GIL);
- ``pmap``: one process, one XLA host device per chain (numpyro's ``chain_method="parallel"``,
  ``--xla_force_host_platform_device_count``).

Figures: total leapfrogs of all chains per wall second of the timed (already compiled) call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--transitions", type=int, default=100)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--layouts", default="ranks,sequential,threads,pmap")
    parser.add_argument("--json")
    # internal: one worker process of a layout
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--chain-ids", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _setup(model_path: str, tune: int, transitions: int):
    """The per-chain program and warmed-up starting settings (identical in every process)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.loading import load_model
    from mpi_pymc.sampling.nuts import Nuts, transition

    compiled = compile_model(load_model(model_path), "float64")
    data, logdensity = compiled.data, compiled.logdensity
    kernel = Nuts(logdensity, tune=tune, target_accept=0.8, max_depth=10)
    state = jax.jit(kernel.init)(jax.random.PRNGKey(0), jnp.asarray(compiled.initial_flat), data)
    state = jax.jit(
        lambda s: jax.lax.fori_loop(0, tune, lambda i, s: kernel.warmup_step(s, data)[0], s)
    )(state)
    step_size = jnp.exp(state.log_step_size)
    inv_mass, start = state.inverse_mass_matrix, state.position
    value_and_grad = jax.value_and_grad(lambda x: logdensity(x, data))

    def chain(key):
        def body(carry, k):
            x, lp, g = carry
            proposal, stats = transition(value_and_grad, k, x, lp, g, step_size, inv_mass, 10)
            return (proposal.x, proposal.logdensity, proposal.grad), stats["n_steps"]

        lp, g = value_and_grad(start)
        return jax.lax.scan(body, (start, lp, g), jax.random.split(key, transitions))[1].sum()

    return chain


def _keys(chain_ids):
    import jax

    return [jax.random.PRNGKey(100 + i) for i in chain_ids]


def _time(run):
    run()  # compile
    start = time.perf_counter()
    steps = run()
    return time.perf_counter() - start, steps


def worker(args) -> dict:
    import jax

    chain = _setup(args.model, args.tune, args.transitions)
    ids = [int(i) for i in args.chain_ids.split(",") if i]
    if args.worker == "pmap":
        keys = jax.numpy.stack(_keys(ids))
        program = jax.pmap(chain)
        seconds, steps = _time(lambda: int(program(keys).sum()))
    else:
        program = jax.jit(chain)
        if args.worker == "threads":
            from concurrent.futures import ThreadPoolExecutor

            def run():
                with ThreadPoolExecutor(len(ids)) as pool:
                    return sum(int(s) for s in pool.map(lambda k: program(k), _keys(ids)))
        else:  # sequential (also each rank of the ranks layout)

            def run():
                return sum(int(program(k)) for k in _keys(ids))

        seconds, steps = _time(run)
    return {"seconds": seconds, "leapfrogs": steps}


def _launch(args, layout: str, ids: list[int], cpu: int | None = None, env_extra=None):
    cmd = [sys.executable, __file__, args.model, "--tune", str(args.tune), "--transitions",
           str(args.transitions), "--worker", layout,
           "--chain-ids", ",".join(map(str, ids))]  # fmt: skip
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)


def _result(proc) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"worker failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> dict:
    args = _parse(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return {}
    cores = len(os.sched_getaffinity(0))
    chains = list(range(args.chains))
    figures = {}
    for layout in [x for x in args.layouts.split(",") if x]:
        if layout.startswith("ranks"):
            cpus = sorted(os.sched_getaffinity(0))
            inner = "pmap" if layout.endswith("pmap") else "sequential"
            procs = []
            for rank in range(min(cores, args.chains)):
                ids = chains[rank::cores]
                env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={len(ids)}"}
                pinned = None if layout.startswith("ranks-free") else cpus[rank]
                procs.append(_launch(args, inner, ids, cpu=pinned, env_extra=env))
            results = [_result(p) for p in procs]
            # The ranks run side by side: the job takes as long as the slowest.
            seconds = max(r["seconds"] for r in results)
            leapfrogs = sum(r["leapfrogs"] for r in results)
        else:
            env = (
                {"XLA_FLAGS": f"--xla_force_host_platform_device_count={args.chains}"}
                if layout == "pmap"
                else None
            )
            r = _result(_launch(args, layout, chains, env_extra=env))
            seconds, leapfrogs = r["seconds"], r["leapfrogs"]
        figures[layout] = {
            "seconds": seconds,
            "leapfrogs": leapfrogs,
            "leapfrogs_per_second": leapfrogs / seconds,
        }
        print(f"{layout:>10}: {leapfrogs} leapfrogs in {seconds:.2f} s = "
              f"{leapfrogs / seconds:,.0f}/s", flush=True)  # fmt: skip
    result = {"model": args.model, "chains": args.chains, "cores": cores,
              "transitions": args.transitions, "layouts": figures}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
