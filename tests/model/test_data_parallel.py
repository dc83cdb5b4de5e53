"""The data-parallel log-density (``mpi_pymc.model.data_parallel``) on real JAX host devices:
value and gradient equal the whole program's to 1e-12 relative, called plainly, ``vmap``-ed
over chains and inside a compiled loop (as a sampler calls it), and each device holds only its
shard's rows. Each device count runs in a subprocess started with ``JAX_NUM_CPU_DEVICES=k``;
across ranks, ``mpirun -n k`` processes of one device each, made one JAX job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import env, launch, mpirun_or_skip

RTOL = 1e-12
POINTS = 20


def _relative(got, want) -> float:
    got, want = np.asarray(got), np.asarray(want)
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


def _errors(build, shards: int) -> dict:
    """One model's largest relative errors against the whole program, and its row placement."""
    import jax
    import jax.numpy as jnp

    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.data_parallel import data_parallel
    from mpi_pymc.model.row_shards import split_rows

    model = build()
    compiled = compile_model(model)
    logdensity, data = data_parallel(split_rows(model, compiled, shards), jax.devices())
    points = compiled.initial_flat + np.random.default_rng(3).uniform(
        -2.0, 2.0, size=(POINTS, compiled.dimension)
    )
    whole = jax.vmap(jax.value_and_grad(compiled.logdensity), in_axes=(0, None))
    want, want_grad = whole(points, compiled.data)
    one = jax.jit(jax.value_and_grad(logdensity))
    plain = [one(p, data) for p in points]
    batched = jax.jit(jax.vmap(jax.value_and_grad(logdensity), in_axes=(0, None)))
    got, got_grad = batched(jnp.asarray(points), data)

    def move(x, gradient):  # a short step along the gradient, as a leapfrog takes
        return x + 1e-2 * gradient / jnp.maximum(1.0, jnp.max(jnp.abs(gradient)))

    @jax.jit
    def looped(flat, data):
        return jax.lax.fori_loop(0, 3, lambda _, x: move(x, jax.grad(logdensity)(x, data)), flat)

    expected = points[0]
    for _ in range(3):
        expected = move(expected, jax.grad(compiled.logdensity)(expected, compiled.data))
    rows = data[1][0].addressable_shards
    return {
        "value": _relative([v for v, _ in plain], want),
        "grad": max(_relative(g, w) for (_, g), w in zip(plain, want_grad, strict=True)),
        "vmap_value": _relative(got, want),
        "vmap_grad": _relative(got_grad, want_grad),
        "loop": _relative(looped(points[0], data), expected),
        "rows_per_device": sorted({s.data.shape[0] for s in rows}),
        "devices_holding_rows": len({s.device.id for s in rows}),
    }


def _worker(out: str, distributed: bool = False) -> None:
    """Runs in the subprocess: every model at ``POINTS`` points, S = every device count (with
    ``distributed``, under mpirun: S = the ranks' devices, one JAX job over the processes)."""
    comm = None
    if distributed:
        from mpi4py import MPI

        from mpi_pymc.core.jax_distributed import start_jax_distributed

        comm = MPI.COMM_WORLD
        start_jax_distributed(comm)
    import jax
    from test_row_shards import hierarchical, logistic, two_observed

    shards = len(jax.devices())
    found: dict = {"devices": shards, "processes": jax.process_count()}
    for build in (logistic, hierarchical, two_observed):
        found[build.__name__] = _errors(build, shards)
    if comm is not None:
        # Each process sees only its own devices' rows: rank 0 reports them all.
        every = comm.gather(found, root=0)
        if comm.Get_rank() != 0:
            return
        for name in ("logistic", "hierarchical", "two_observed"):
            for key in ("value", "grad", "vmap_value", "vmap_grad", "loop"):
                found[name][key] = max(f[name][key] for f in every)
            found[name]["rows_per_device"] = sorted(
                {n for f in every for n in f[name]["rows_per_device"]}
            )
            found[name]["devices_holding_rows"] = sum(
                f[name]["devices_holding_rows"] for f in every
            )
    Path(out).write_text(json.dumps(found))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data_parallel")
    environment = env()
    environment["PYTHONPATH"] += os.pathsep + os.pathsep.join(
        [str(Path(__file__).parent.parent), str(Path(__file__).parent)]
    )
    procs = {}
    for k in (2, 4):
        out = str(tmp / f"k{k}.json")
        run_env = {**environment, "JAX_NUM_CPU_DEVICES": str(k), "JAX_PLATFORMS": "cpu"}
        procs[k] = (out, subprocess.Popen([sys.executable, __file__, out], env=run_env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    found = {}
    for k, (out, proc) in procs.items():
        try:
            _, stderr = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"the worker on {k} devices hung")
        assert proc.returncode == 0, stderr
        found[k] = json.loads(Path(out).read_text())
    return found


@pytest.fixture(scope="module")
def across_ranks(tmp_path_factory):
    """The same checks with one device per process and S = 2, 4 ``mpirun`` processes made one
    JAX job (``start_jax_distributed``): the psum runs between the processes (gloo)."""
    tmp = tmp_path_factory.mktemp("data_parallel_ranks")
    environment = env()
    environment["PYTHONPATH"] += os.pathsep + os.pathsep.join(
        [str(Path(__file__).parent.parent), str(Path(__file__).parent)]
    )
    environment["JAX_PLATFORMS"] = "cpu"
    environment.pop("JAX_NUM_CPU_DEVICES", None)
    found = {}
    for ranks in (2, 4):  # one after the other: 4 ranks already crowd a small machine
        out = tmp / f"n{ranks}.json"
        cmd = [mpirun_or_skip(), "-n", str(ranks), sys.executable, __file__, str(out)]
        proc = launch([*cmd, "--distributed"], 600, env=environment)
        assert proc.returncode == 0, proc.stderr
        found[ranks] = json.loads(out.read_text())
    return found


@pytest.mark.parametrize("shards", [2, 4])
@pytest.mark.parametrize("model", ["logistic", "hierarchical", "two_observed"])
def test_across_ranks_equals_the_whole_program(across_ranks, shards, model):
    found = across_ranks[shards]
    assert (found["devices"], found["processes"]) == (shards, shards)
    errors = found[model]
    for key in ("value", "grad", "vmap_value", "vmap_grad", "loop"):
        assert errors[key] <= RTOL, (key, errors[key])
    if model == "logistic":
        assert errors["rows_per_device"] == [-(-203 // shards)]
        assert errors["devices_holding_rows"] == shards


@pytest.mark.parametrize("shards", [2, 4])
@pytest.mark.parametrize("model", ["logistic", "hierarchical", "two_observed"])
def test_equals_the_whole_program(results, shards, model):
    found = results[shards]
    assert found["devices"] == shards
    errors = found[model]
    for key in ("value", "grad", "vmap_value", "vmap_grad", "loop"):
        assert errors[key] <= RTOL, (key, errors[key])


@pytest.mark.parametrize("shards", [2, 4])
def test_each_device_holds_its_rows_only(results, shards):
    # logistic: 203 rows -> 102 per shard of 2 (one padded), 51 per shard of 4.
    assert results[shards]["logistic"]["rows_per_device"] == [-(-203 // shards)]
    assert results[shards]["logistic"]["devices_holding_rows"] == shards


def test_fewer_devices_than_shards_is_refused():
    import jax
    from test_row_shards import logistic

    from mpi_pymc.core.config import UserError
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.data_parallel import data_parallel
    from mpi_pymc.model.row_shards import split_rows

    model = logistic()
    split = split_rows(model, compile_model(model), 2)
    with pytest.raises(
        UserError, match="--data-shards 2 needs 2 devices in the process, which has 1"
    ):
        data_parallel(split, jax.devices()[:1])


if __name__ == "__main__":
    _worker(sys.argv[1], distributed="--distributed" in sys.argv)
