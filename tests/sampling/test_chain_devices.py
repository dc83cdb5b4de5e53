"""A rank's chains over its local devices (mpi_pymc.sampling.chain_devices), with real JAX host
devices: each case runs in a subprocess started with ``JAX_NUM_CPU_DEVICES=k`` (JAX reads it
once, when its CPU backend starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import env

from mpi_pymc.core.config import UserError
from mpi_pymc.sampling.chain_devices import place_chains

ROOT_SEED = 5
TUNE, DRAWS, CHUNK = 40, 20, 8  # two and a half chunks: a shorter last call too


def _model():
    import pymc as pm

    y = np.array([2.1, -0.3, 1.4, 0.8, 3.0, -1.2, 0.4, 1.9])
    group = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        tau = pm.HalfNormal("tau", 1.0)
        theta = pm.Normal("theta", mu, tau, shape=3)
        pm.Normal("y", theta[group], 1.0, observed=y)
    return model


def _sample(compiled, model, method: str, chains: range, adapt_group: int = 1):
    """Warmup and draws of ``chains`` on this process's devices: positions, lp, devices used."""
    from mpi_pymc.core import seeding
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.sampling.chain_group import ChainGroupSampler, initial_positions

    name = "hmc" if adapt_group > 1 else "nuts"
    config = RunConfig(model_path="m.py", tune=TUNE, draws=DRAWS, chunk_draws=CHUNK,
                       chain_method=method, sampler=name, adapt_group=adapt_group)  # fmt: skip
    sampler = ChainGroupSampler(compiled, config)
    starts = initial_positions(compiled, model, ROOT_SEED, chains).positions
    state = sampler.init(seeding.sampler_keys(ROOT_SEED, chains), starts)
    if sampler.warmup_in_chunks:
        for _ in range(-(-TUNE // CHUNK)):
            state = sampler.warmup(state, CHUNK)
    else:
        state = sampler.warmup(state, TUNE)
    drawn, lps, step_sizes = [], [], []
    for start in range(0, DRAWS, CHUNK):
        state, positions, stats = sampler.sample(state, min(CHUNK, DRAWS - start))
        drawn.append(np.asarray(positions))
        lps.append(np.asarray(stats["lp"]))
        step_sizes.append(np.asarray(stats["step_size"]))
    return {
        "positions": np.concatenate(drawn, axis=1),
        "lp": np.concatenate(lps, axis=1),
        "step_size": np.concatenate(step_sizes, axis=1),
        "chains_per_device": dict(sampler.chains_per_device),
        "used": sampler.placement(len(chains)).used,
    }


def _worker(out: str) -> None:
    """Runs in the subprocess: every case below on this process's devices, saved to ``out``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from mpi_pymc.model.compile import compile_model

    model = _model()
    compiled = compile_model(model, "float64")
    devices = len(jax.local_devices())
    cases = {
        "sequential": _sample(compiled, model, "sequential", range(5)),
        "vectorized": _sample(compiled, model, "vectorized", range(4)),
    }
    if devices > 1:
        cases["vectorized_padded"] = _sample(compiled, model, "vectorized", range(5))
    if devices == 2:  # two adaptation groups of two chains, one on each device
        cases["grouped"] = _sample(compiled, model, "vectorized", range(4), adapt_group=2)
    arrays = {f"{case}/{k}": v for case, found in cases.items() for k, v in found.items()
              if isinstance(v, np.ndarray)}  # fmt: skip
    np.savez(out, **arrays)
    meta = {case: {k: v for k, v in found.items() if not isinstance(v, np.ndarray)}
            for case, found in cases.items()}  # fmt: skip
    meta["devices"] = devices
    Path(out + ".json").write_text(json.dumps(meta))


class _Runs:
    """The worker's results on k host devices, one subprocess per k, started on first need
    (two at a time, side by side), so no test waits for more than two."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs, self.found = tmp, {}, {}

    def start(self, k: int) -> None:
        if k in self.procs:
            return
        environment = env()
        environment["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent.parent)  # helpers
        environment.update(JAX_NUM_CPU_DEVICES=str(k), JAX_PLATFORMS="cpu")
        out = str(self.tmp / f"k{k}.npz")
        self.procs[k] = (out, subprocess.Popen([sys.executable, __file__, out], env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip

    def __getitem__(self, k: int) -> dict:
        if k not in self.found:
            self.start(k)
            out, proc = self.procs[k]
            try:
                _, stderr = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"the worker on {k} devices hung")
            assert proc.returncode == 0, stderr
            with np.load(out) as data:
                self.found[k] = {key: data[key] for key in data.files}
            self.found[k]["meta"] = json.loads(Path(out + ".json").read_text())
        return self.found[k]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    found = _Runs(tmp_path_factory.mktemp("devices"))
    found.start(1)
    found.start(2)
    return found


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_the_rank_sees_the_host_devices_it_was_started_with(runs, devices):
    assert runs[devices]["meta"]["devices"] == devices


@pytest.mark.parametrize("devices", [2, 4])
def test_sequential_chains_are_bit_identical_on_any_device_count(runs, devices):
    for key in ("sequential/positions", "sequential/lp"):
        np.testing.assert_array_equal(runs[devices][key], runs[1][key], err_msg=key)
    assert not np.array_equal(runs[1]["sequential/lp"][0], runs[1]["sequential/lp"][1])


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_every_device_runs_its_share_of_the_chains(runs, devices):
    """Counted from the devices the results were computed on (dummy chains not counted)."""
    meta = runs[devices]["meta"]
    expected = {  # chains each device runs per call
        "sequential": np.bincount(np.arange(5) % devices),  # round-robin
        "vectorized": [4 // devices] * devices,
    }
    if devices > 1:
        expected["vectorized_padded"] = {2: [3, 2], 4: [2, 2, 1]}[devices]  # 4: 2 each, on 3
    for case, per_call in expected.items():
        found = {int(d): n for d, n in meta[case]["chains_per_device"].items()}
        assert meta[case]["used"] == len(per_call), case
        calls = sum(found.values()) // sum(per_call)
        assert calls >= 4, case  # init, warmup and sampling calls
        assert found == {d: calls * int(n) for d, n in enumerate(per_call)}, case


@pytest.mark.parametrize("devices", [2, 4])
def test_vectorized_chains_match_one_device(runs, devices):
    """Not bit for bit: XLA rounds a block under a multi-device shard_map otherwise than the
    one-device program (1.7e-9 apart after 60 NUTS iterations, for the same two chains), and a
    batch of 2 otherwise than one of 4; sequential chains (the CPU default) are bit-identical."""
    for key in ("positions", "lp"):
        np.testing.assert_allclose(
            runs[devices][f"vectorized/{key}"], runs[1][f"vectorized/{key}"], rtol=1e-6,
            err_msg=key,
        )  # fmt: skip


def test_adaptation_groups_stay_whole_on_one_device_each(runs):
    """hmc --adapt-group 2, four chains on two devices: a group's chains share their adapted
    step size (pooled within the device), the two groups adapt apart."""
    step_size = runs[2]["grouped/step_size"]
    np.testing.assert_array_equal(step_size[0], step_size[1])
    np.testing.assert_array_equal(step_size[2], step_size[3])
    assert step_size[0, 0] != step_size[2, 0]
    per_device = runs[2]["meta"]["grouped"]["chains_per_device"]
    assert sorted(per_device) == ["0", "1"] and per_device["0"] == per_device["1"]
    assert np.isfinite(runs[2]["grouped/lp"]).all()


@pytest.mark.parametrize("devices", [2, 4])
def test_padded_vectorized_chains_keep_their_shapes(runs, devices):
    assert runs[devices]["vectorized_padded/positions"].shape == (5, DRAWS, 5)
    assert np.isfinite(runs[devices]["vectorized_padded/lp"]).all()


def test_placement_uses_as_many_devices_as_chains_and_keeps_groups_whole():
    devices = ["d0", "d1", "d2", "d3"]
    assert place_chains(2, devices, vectorized=True).devices == ("d0", "d1")
    padded = place_chains(5, devices, vectorized=True)
    assert (padded.used, padded.per_device, padded.padded) == (3, 2, 6)
    assert [place_chains(5, devices, False).device_of(i) for i in range(5)] == [
        "d0", "d1", "d2", "d3", "d0"
    ]  # fmt: skip
    grouped = place_chains(8, devices, vectorized=True, group_size=2)
    assert (grouped.used, grouped.per_device) == (4, 2)
    assert place_chains(4, devices, vectorized=True, group_size=4).used == 1
    with pytest.raises(UserError, match="--adapt-group 2 must divide the chains on each"):
        place_chains(6, devices[:2], vectorized=True, group_size=2)


if __name__ == "__main__":
    os.environ.setdefault("MPI_PYMC_JAX_CACHE", "off")
    _worker(sys.argv[1])
