"""End-to-end runs under real ``mpirun`` (1, 2, 4 ranks, oversubscribed) and without it."""

from __future__ import annotations

import json
import os

import arviz as az
import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import EIGHT_SCHOOLS, EXAMPLES, run_ranks

from mpi_pymc.core.topology import cores_to_pin

SCHOOLS = ["Choate", "Deerfield", "Phillips Andover", "Phillips Exeter", "Hotchkiss",
           "Lawrenceville", "St. Paul's", "Mt. Hermon"]  # fmt: skip
COMMON = ["--draws", "30", "--tune", "30", "--chains", "4", "--seed", "11", "--chunk-draws", "8"]


@pytest.fixture(scope="module")
def sequential_runs(tmp_path_factory):
    """The same sequential run on 1, 2 and 4 ranks."""
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    for n in (1, 2, 4):
        path = tmp / f"es{n}.h5"
        proc = run_ranks(
            n,
            ["run", str(EIGHT_SCHOOLS), *COMMON, "--chain-method", "sequential", "--out",
             str(path)],
            cwd=tmp,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[n] = (path, proc)
    return out


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_run_writes_a_file_arviz_opens(sequential_runs, ranks):
    path, proc = sequential_runs[ranks]
    idata = az.from_netcdf(path)
    post = idata.posterior
    assert dict(post.sizes) == {"chain": 4, "draw": 30, "school": 8}
    assert list(post.chain.values) == [0, 1, 2, 3]
    assert list(post.school.values) == SCHOOLS
    assert set(post.data_vars) == {"mu", "tau", "theta", "theta_trans"}
    assert np.isfinite(post.theta.values).all()
    assert (post.tau.values > 0).all()
    stats = idata.sample_stats
    assert set(stats.data_vars) >= {
        "lp", "diverging", "energy", "step_size", "tree_depth", "n_steps", "acceptance_rate"
    }  # fmt: skip
    assert stats.diverging.dtype == bool
    assert (stats.n_steps.values >= 1).all()
    np.testing.assert_array_equal(idata.observed_data.y.values, [28, 8, -3, 7, -1, 1, 18, 12])
    with h5py.File(path) as f:
        assert f.attrs["ranks"] == ranks
        assert f.attrs["root_seed"] == "11"
        np.testing.assert_array_equal(f.attrs["draws_completed"], [30, 30, 30, 30])
        binding = json.loads(f.attrs["binding"])
        assert [b["world_rank"] for b in binding] == list(range(ranks))
        assert all(b["platform"] == "cpu" for b in binding)
        # CPU ranks pin themselves to equal shares of the node when mpirun left them all of it
        # (the Open MPI wheel here); a launcher that bound them (system Open MPI 4 binds 2
        # ranks to cores by default) keeps its binding.
        total = os.cpu_count() or 1
        assert [b["cpus"] for b in binding] == [
            cores_to_pin(b["launcher_cpus"], total, b["local_rank"], b["local_size"])
            for b in binding
        ]
        if ranks > 1 and all(len(b["launcher_cpus"]) == total for b in binding):
            assert all(b["cpus"] for b in binding)
        versions = json.loads(f.attrs["versions"])
        assert {"pymc", "jax", "numpyro", "mpi4py", "h5py", "mpi_library"} <= set(versions)
        assert json.loads(f.attrs["chain_groups"])[0][0] == 0
    tree = xr.open_datatree(path, engine="h5netcdf")
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "school")
    assert "r_hat" in proc.stdout and "mu" in proc.stdout and str(path) in proc.stdout


def test_same_seed_gives_bit_identical_chains_on_1_2_4_ranks(sequential_runs):
    data = {}
    for n, (path, _) in sequential_runs.items():
        with h5py.File(path) as f:
            data[n] = {v: f["posterior"][v][()] for v in ("mu", "tau", "theta")}
            data[n]["lp"] = f["sample_stats"]["lp"][()]
    for n in (2, 4):
        for var, values in data[1].items():
            np.testing.assert_array_equal(values, data[n][var], err_msg=f"{var} on {n} ranks")
    # Different chains are different streams.
    assert not np.array_equal(data[1]["mu"][0], data[1]["mu"][1])


def test_vectorized_blackjax_and_vectorized_float32_nuts_on_two_ranks(tmp_path):
    vectorized = ["--chain-method", "vectorized"]
    for extra in (["--sampler", "blackjax", *vectorized], ["--precision", "float32", *vectorized]):
        out = tmp_path / f"{extra[1]}.h5"
        proc = run_ranks(
            2, ["run", str(EIGHT_SCHOOLS), *COMMON, "--out", str(out), *extra], cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        idata = az.from_netcdf(out)
        assert np.isfinite(idata.posterior.mu.values).all()
        assert idata.sample_stats.acceptance_rate.mean() > 0.3
        if extra[1] == "float32":
            assert idata.posterior.mu.dtype == np.float32
            assert "Explicitly requested dtype float64" not in proc.stderr  # PyTensor's, silenced


def test_singleton_run_without_mpirun_and_a_build_model_file(tmp_path):
    out = tmp_path / "logit.h5"
    proc = run_ranks(
        None,
        ["run", str(EXAMPLES / "logistic_regression.py"), "--draws", "20", "--tune", "20",
         "--chains", "2", "--out", str(out)],
        cwd=tmp_path,
        extra_env={"MPI_PYMC_N": "300", "MPI_PYMC_D": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    idata = az.from_netcdf(out)
    assert dict(idata.posterior.beta.sizes) == {"chain": 2, "draw": 20, "feature": 3}
    assert list(idata.posterior.feature.values) == ["x0", "x1", "x2"]
    assert idata.constant_data.X.shape == (300, 3)


def _draws(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        found = {f"posterior/{k}": f["posterior"][k][()] for k in f["posterior"] if k != "chain"}
        found.update({f"sample_stats/{k}": f["sample_stats"][k][()] for k in ("lp", "n_steps")})
    return {k: v for k, v in found.items() if v.ndim >= 2}


def test_hmc_sampler_same_draws_for_any_ranks_and_chunking(tmp_path):
    """The hmc sampler keeps the bit-identity promise; vectorized it also runs and adapts."""
    runs = {}
    for ranks, chunk, method in ((1, "8", "sequential"), (2, "30", "sequential"),
                                 (2, "8", "vectorized")):  # fmt: skip
        out = tmp_path / f"hmc{ranks}-{chunk}-{method}.h5"
        options = [*COMMON[:-1], chunk, "--sampler", "hmc", "--chain-method", method]
        proc = run_ranks(ranks, ["run", str(EIGHT_SCHOOLS), *options, "--out", str(out)],
                         cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[(ranks, chunk, method)] = _draws(out)
    one, two = runs[(1, "8", "sequential")], runs[(2, "30", "sequential")]
    for key, values in one.items():
        np.testing.assert_array_equal(values, two[key], err_msg=key)
    vectorized = runs[(2, "8", "vectorized")]
    assert np.isfinite(vectorized["posterior/mu"]).all()
    assert (vectorized["sample_stats/n_steps"] >= 1).all()


def test_hmc_adaptation_groups_step_together_and_keep_draws_rank_independent(tmp_path):
    """--adapt-group 2: a group's chains share step size and steps, and a group's draws do not
    depend on the other ranks (chains 0-1 alone on 1 rank = chains 0-1 of 4 on 2 ranks)."""
    runs = {}
    for ranks, chains in ((1, "2"), (2, "4")):
        out = tmp_path / f"group{ranks}.h5"
        options = [*COMMON, "--chains", chains, "--sampler", "hmc", "--adapt-group", "2"]
        proc = run_ranks(ranks, ["run", str(EIGHT_SCHOOLS), *options, "--out", str(out)],
                         cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[ranks] = _draws(out)
        with h5py.File(out) as f:
            step_size = f["sample_stats"]["step_size"][()]
    for key, values in runs[1].items():
        np.testing.assert_array_equal(values, runs[2][key][:2], err_msg=key)
    steps = runs[2]["sample_stats/n_steps"]
    np.testing.assert_array_equal(steps[0], steps[1])
    np.testing.assert_array_equal(steps[2], steps[3])
    np.testing.assert_array_equal(step_size[0], step_size[1])
    assert step_size[0, 0] != step_size[2, 0]  # the two groups adapt apart


def test_ranks_of_a_node_share_one_copy_of_the_data(tmp_path):
    """Data over 1 MB live once per node (MPI shared memory); the draws do not change."""
    draws = {}
    for share in ("1", "0"):
        out = tmp_path / f"share{share}.h5"
        proc = run_ranks(
            2,
            ["run", str(EXAMPLES / "logistic_regression.py"), "--draws", "20", "--tune", "20",
             "--chains", "2", "--seed", "3", "--out", str(out)],
            cwd=tmp_path,
            extra_env={"MPI_PYMC_N": "7000", "MPI_PYMC_D": "20", "MPI_PYMC_SHARE_DATA": share},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            shared = list(f.attrs["node_shared_data_bytes"])
        # X: 7000 x 20 float64 = 1.12 MB, shared; y (7000 int8 as int64 = 56 kB) stays private.
        assert shared == ([7000 * 20 * 8] * 2 if share == "1" else [0, 0])
        draws[share] = _draws(out)
    for key, values in draws["1"].items():
        np.testing.assert_array_equal(values, draws["0"][key], err_msg=key)


DETERMINISTICS_OVER_DATA = """
import numpy as np
import pymc as pm

rng = np.random.default_rng(5)
X, Z = rng.normal(size=(7000, 20)), rng.normal(size=(7000, 20))
y = (rng.random(7000) < 0.5).astype("int8")
with pm.Model() as model:
    Xd, Zd = pm.Data("X", X), pm.Data("Z", Z)
    alpha = pm.Normal("alpha", 0.0, 1.0)
    beta = pm.Normal("beta", 0.0, 1.0, shape=20)
    eta = pm.Deterministic("eta", alpha + Xd @ beta)  # X: read by both programs
    pm.Deterministic("zeta", Zd @ beta)  # Z: read by the Deterministics only
    pm.Bernoulli("y", logit_p=eta, observed=y)
"""


def test_the_deterministics_data_is_shared_too_and_read_right(tmp_path):
    """X, read by the log-density and a Deterministic, is shared once; Z, read by a
    Deterministic only (``constrain_data``), is shared as well; the Deterministics equal their
    formulas on the draws, and the draws do not change with sharing."""
    model = tmp_path / "dets.py"
    model.write_text(DETERMINISTICS_OVER_DATA)
    namespace: dict = {}
    exec(DETERMINISTICS_OVER_DATA, namespace)
    X, Z = namespace["X"], namespace["Z"]
    draws = {}
    for share in ("1", "0"):
        out = tmp_path / f"dets{share}.h5"
        proc = run_ranks(
            2,
            ["run", str(model), "--draws", "10", "--tune", "10", "--chains", "2", "--seed", "3",
             "--out", str(out)],
            cwd=tmp_path,
            extra_env={"MPI_PYMC_SHARE_DATA": share},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            shared = list(f.attrs["node_shared_data_bytes"])
            alpha, beta = f["posterior/alpha"][()], f["posterior/beta"][()]
            eta, zeta = f["posterior/eta"][()], f["posterior/zeta"][()]
        assert shared == ([2 * 7000 * 20 * 8] * 2 if share == "1" else [0, 0])
        np.testing.assert_allclose(eta, alpha[..., None] + beta @ X.T, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(zeta, beta @ Z.T, rtol=1e-10, atol=1e-10)
        draws[share] = (alpha, beta, eta, zeta)
    for got, want in zip(draws["1"], draws["0"], strict=True):
        np.testing.assert_array_equal(got, want)


def test_ranks_run_their_chains_on_all_their_host_devices(tmp_path):
    """JAX_NUM_CPU_DEVICES=2: a rank splits its chains over its 2 host devices (one, when it has
    one chain); the draws equal one device's, and the binding records the devices."""
    runs, bindings = {}, {}
    for ranks, devices in ((1, "1"), (2, "2")):
        out = tmp_path / f"devices{ranks}.h5"
        options = [*COMMON, "--chains", "3", "--chain-method", "sequential"]
        proc = run_ranks(ranks, ["run", str(EIGHT_SCHOOLS), *options, "--out", str(out)],
                         cwd=tmp_path, extra_env={"JAX_NUM_CPU_DEVICES": devices})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[ranks] = _draws(out)
        with h5py.File(out) as f:
            bindings[ranks] = json.loads(f.attrs["binding"])
    for key, values in runs[1].items():
        np.testing.assert_array_equal(values, runs[2][key], err_msg=key)
    assert [(b["local_devices"], b["chain_devices"]) for b in bindings[1]] == [(1, 1)]
    # Rank 0 has chains 0-1 (both devices), rank 1 chain 2 (one device of two).
    assert [(b["local_devices"], b["chain_devices"]) for b in bindings[2]] == [(2, 2), (2, 1)]


@pytest.mark.parametrize(
    "flags,devices", [(None, 1), ("--xla_force_host_platform_device_count=2", 2)]
)
def test_a_cpu_rank_has_the_host_devices_it_was_given_not_pymcs_hundred(tmp_path, flags, devices):
    """Importing pymc.sampling.jax sets XLA_FLAGS to 100 host devices (dropping the user's
    count); a rank must start with one device by default, or the count the user's flag gives."""
    out = tmp_path / "fit.h5"
    environment = {"XLA_FLAGS": flags} if flags else {}
    proc = run_ranks(
        1,
        ["run", str(EIGHT_SCHOOLS), *COMMON, "--chains", "2", "--chain-method", "sequential",
         "--out", str(out)],
        cwd=tmp_path,
        extra_env=environment,
        drop_env=("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        (binding,) = json.loads(f.attrs["binding"])
    assert (binding["local_devices"], binding["chain_devices"]) == (devices, devices)
