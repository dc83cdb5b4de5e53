"""The model phase's data shards (``driver.model.shard_the_data``): a run with ``--data-shards 2``
on a rank with 2 host devices samples the unsharded run's posterior (within MCSE bounds), keeps
the Deterministics over the rows whole, resumes only on its own layout, and bad input gets one
line and exit 2."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from helpers import error_lines, run_ranks
from tolerances import SIGMAS, az

from mpi_pymc.diagnostics import maths as diagnostics

LOGISTIC = """
import numpy as np
import pymc as pm

rng = np.random.default_rng(11)
N, D = 301, 3
X = rng.normal(size=(N, D))
y = (rng.random(N) < 1 / (1 + np.exp(-(0.3 + X @ np.array([1.0, -0.5, 0.25]))))).astype("int8")
with pm.Model(coords={"obs": range(N), "k": range(D)}) as model:
    Xd = pm.Data("X", X, dims=("obs", "k"))
    alpha = pm.Normal("alpha", 0.0, 2.5)
    beta = pm.Normal("beta", 0.0, 1.0, dims="k")
    eta = pm.Deterministic("eta", alpha + Xd @ beta, dims="obs")
    pm.Bernoulli("y", logit_p=eta, observed=y, dims="obs")
"""
WALK = """
import numpy as np
import pymc as pm

with pm.Model() as model:
    sigma = pm.HalfNormal("sigma", 1.0)
    pm.GaussianRandomWalk("walk", sigma=sigma, init_dist=pm.Normal.dist(),
                          observed=np.random.default_rng(1).normal(size=60).cumsum())
"""
CHAINS, TUNE, DRAWS, SEED = 4, 400, 400, 20261208
TWO_DEVICES = {"JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
THREE_DEVICES = {"JAX_NUM_CPU_DEVICES": "3", "JAX_PLATFORMS": "cpu"}


def _run(tmp_path, out, *extra, devices=TWO_DEVICES, timeout=300):
    args = ["run", "logistic.py", "--chains", str(CHAINS), "--tune", str(TUNE), "--draws",
            str(DRAWS), "--seed", str(SEED), "--out", str(out), *extra]  # fmt: skip
    return run_ranks(None, args, cwd=tmp_path, timeout=timeout, extra_env=devices)


def _posterior(out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = az.from_netcdf(out)
        posterior = (tree.posterior if hasattr(tree, "posterior") else tree["posterior"]).load()
        constant = tree.constant_data if hasattr(tree, "constant_data") else tree["constant_data"]
        X = np.asarray(constant["X"])
    return posterior, X


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same model and seed, unsharded and over 2 data shards (one rank, 2 host devices)."""
    tmp = tmp_path_factory.mktemp("data_shards")
    (tmp / "logistic.py").write_text(LOGISTIC)
    found = {}
    for name, extra in (("whole", []), ("shards", ["--data-shards", "2"])):
        proc = _run(tmp, tmp / f"{name}.h5", *extra)
        assert proc.returncode == 0, proc.stderr[-4000:]
        found[name] = _posterior(tmp / f"{name}.h5")
    return found


def test_sharded_posterior_matches_the_unsharded_one_within_mcse(runs):
    (whole, _), (shards, _) = runs["whole"], runs["shards"]
    for name in ("alpha", "beta"):
        a = whole[name].values.reshape(CHAINS, DRAWS, -1)
        b = shards[name].values.reshape(CHAINS, DRAWS, -1)
        for draws_a, draws_b in ((a, b),):
            mcse = np.hypot(diagnostics.mcse_mean(draws_a), diagnostics.mcse_mean(draws_b))
            off = np.abs(draws_a.mean(axis=(0, 1)) - draws_b.mean(axis=(0, 1)))
            assert np.all(off < SIGMAS * mcse), (name, off, mcse)
            sd_a, sd_b = draws_a.std(axis=(0, 1)), draws_b.std(axis=(0, 1))
            mcse_sd = np.hypot(_mcse_sd(draws_a), _mcse_sd(draws_b))
            assert np.all(np.abs(sd_a - sd_b) < SIGMAS * mcse_sd), (name, sd_a, sd_b, mcse_sd)


def _mcse_sd(draws: np.ndarray) -> np.ndarray:
    """MCSE of the sd from the squared deviations' (as ArviZ's ``mcse(method="sd")``)."""
    sd = draws.std(axis=(0, 1), ddof=1)
    sq = (draws - draws.mean(axis=(0, 1))) ** 2
    return sq.std(axis=(0, 1), ddof=1) / np.sqrt(diagnostics.ess_mean(sq)) / (2 * sd)


def test_deterministics_over_the_rows_are_whole(runs):
    """``eta`` has all 301 rows, each draw's equal to ``alpha + X @ beta``."""
    posterior, X = runs["shards"]
    eta = posterior["eta"].values
    assert eta.shape == (CHAINS, DRAWS, 301)
    expected = posterior["alpha"].values[..., None] + posterior["beta"].values @ X.T
    np.testing.assert_allclose(eta, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("extra", "devices", "needle"),
    [
        (["--data-shards", "2"], THREE_DEVICES, "this rank has 3: start each rank with 2"),
        (["--data-shards", "400"], TWO_DEVICES, "between 1 and the model's 301 rows, got 400"),
        (["--data-shards", "0"], TWO_DEVICES, "--data-shards must be a positive integer"),
        (["--data-row-dim", "obs"], TWO_DEVICES, "pass --data-shards S too"),
        (["--data-shards", "2", "--data-row-dim", "nope"], TWO_DEVICES, "'nope' is not a dim"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path, extra, devices, needle):
    (tmp_path / "logistic.py").write_text(LOGISTIC)
    proc = _run(tmp_path, tmp_path / "bad.h5", "--draws", "5", *extra, devices=devices)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


ONE_DEVICE = {"JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module", params=[2, 4])
def across_ranks(request, tmp_path_factory):
    """The sharded run over ranks of one device each: ``mpirun -n 2`` is one chain group of 2
    shards, ``-n 4`` two chain groups of 2 shards (ranks 0-1 and 2-3)."""
    ranks = request.param
    tmp = tmp_path_factory.mktemp(f"data_shards_ranks{ranks}")
    (tmp / "logistic.py").write_text(LOGISTIC)
    args = ["run", "logistic.py", "--chains", str(CHAINS), "--tune", str(TUNE), "--draws",
            str(DRAWS), "--seed", str(SEED), "--out", str(tmp / "ranks.h5"),
            "--data-shards", "2"]  # fmt: skip
    proc = _run_one_device(ranks, args, tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ranks, _posterior(tmp / "ranks.h5")


def _run_one_device(ranks: int, args: list[str], cwd, timeout: float = 600):
    return run_ranks(ranks, args, cwd=cwd, timeout=timeout, extra_env=ONE_DEVICE,
                     drop_env=("JAX_NUM_CPU_DEVICES",))  # fmt: skip


def test_shards_across_ranks_match_the_unsharded_posterior_within_mcse(runs, across_ranks):
    ranks, (shards, X) = across_ranks
    whole, _ = runs["whole"]
    # One file in the unsharded layout: every chain once, whichever ranks ran it.
    assert shards["alpha"].shape == (CHAINS, DRAWS)
    for name in ("alpha", "beta"):
        a = whole[name].values.reshape(CHAINS, DRAWS, -1)
        b = shards[name].values.reshape(CHAINS, DRAWS, -1)
        mcse = np.hypot(diagnostics.mcse_mean(a), diagnostics.mcse_mean(b))
        off = np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1)))
        assert np.all(off < SIGMAS * mcse), (ranks, name, off, mcse)
        mcse_sd = np.hypot(_mcse_sd(a), _mcse_sd(b))
        sd_off = np.abs(a.std(axis=(0, 1)) - b.std(axis=(0, 1)))
        assert np.all(sd_off < SIGMAS * mcse_sd), (ranks, name, sd_off, mcse_sd)
    expected = shards["alpha"].values[..., None] + shards["beta"].values @ X.T
    np.testing.assert_allclose(shards["eta"].values, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("ranks", "existing", "needle"),
    [
        (3, False, "2 does not divide the 3 ranks: start a multiple of 2 ranks"),
        # Only shard 0 judges the run's output: shard 1's rank hears its refusal, no hang.
        (2, True, "already exists: pass --overwrite to replace it"),
    ],
)
def test_shards_across_ranks_get_one_line_and_exit_2_on_every_rank(
    tmp_path, ranks, existing, needle
):
    # Ranks of one device each: S must divide the ranks; an existing output is kept.
    (tmp_path / "logistic.py").write_text(LOGISTIC)
    out = tmp_path / "bad.h5"
    if existing:
        out.write_bytes(b"not to be damaged")
    args = ["run", "logistic.py", "--chains", "6", "--draws", "5", "--tune", "5",
            "--out", str(out), "--data-shards", "2"]  # fmt: skip
    proc = _run_one_device(ranks, args, tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and needle in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    if existing:
        assert out.read_bytes() == b"not to be damaged"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "logistic.py"]


def test_shards_across_ranks_resume_after_a_failure_to_the_uninterrupted_draws(tmp_path):
    """2 ranks as 2 shards of one chain group: a failure mid-sampling leaves both shards'
    checkpoints (shard 1's in its folder beside the output), and --resume on the same layout
    gives the uninterrupted run's draws bit for bit; a complete run leaves no shard folder."""
    (tmp_path / "logistic.py").write_text(LOGISTIC)
    settings = ["run", "logistic.py", "--chains", str(CHAINS), "--tune", "100", "--draws", "100",
                "--seed", str(SEED), "--chunk-draws", "25", "--data-shards", "2"]  # fmt: skip
    ref, out = tmp_path / "ref.h5", tmp_path / "run.h5"
    proc = _run_one_device(2, [*settings, "--out", str(ref)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logistic.py", "ref.h5"]
    failed = run_ranks(2, [*settings, "--out", str(out)], cwd=tmp_path, timeout=600,
                       extra_env={**ONE_DEVICE, "MPI_PYMC_INJECT_FAULT": "0:50"},
                       drop_env=("JAX_NUM_CPU_DEVICES",))  # fmt: skip
    assert failed.returncode not in (0, 2, 3), failed.stderr[-4000:]
    assert (tmp_path / ".run.h5.shard1").is_dir()  # shard 1's checkpoint, kept for --resume
    proc = _run_one_device(2, [*settings, "--out", str(out), "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not (tmp_path / ".run.h5.shard1").exists()
    with h5py.File(ref) as a, h5py.File(out) as b:
        for key in (
            "posterior/alpha",
            "posterior/beta",
            "sample_stats/lp",
            "sample_stats/step_size",
        ):
            np.testing.assert_array_equal(b[key][()], a[key][()], err_msg=key)


@pytest.mark.parametrize(("fault", "kept"), [("1:50", 50), ("1:50:checkpoint", 25)])
def test_a_write_failing_on_one_shard_stops_every_rank_with_one_line(tmp_path, fault, kept):
    """Shard 1's disk fills at draw 50 (an injected ENOSPC on its rank only, in its draws' or its
    checkpoint's write): every rank of both shards stops there with one line and exit 2 (shard
    0's rank, left alone, would wait forever in the next leapfrog's collective), and the draws
    the file marked complete before it are kept."""
    (tmp_path / "logistic.py").write_text(LOGISTIC)
    out = tmp_path / "run.h5"
    args = ["run", "logistic.py", "--chains", str(CHAINS), "--tune", "100", "--draws", "100",
            "--seed", str(SEED), "--chunk-draws", "25", "--data-shards", "2",
            "--out", str(out)]  # fmt: skip
    proc = run_ranks(2, args, cwd=tmp_path, timeout=300,
                     extra_env={**ONE_DEVICE, "MPI_PYMC_INJECT_WRITE_FAULT": fault},
                     drop_env=("JAX_NUM_CPU_DEVICES",))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-4000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "injected write fault at draw 50" in lines[0], proc.stderr[-3000:]
    with h5py.File(out) as f:
        assert f.attrs["draws_completed"].tolist() == [kept] * CHAINS


def test_a_likelihood_that_is_not_split_over_rows_is_refused(tmp_path):
    (tmp_path / "walk.py").write_text(WALK)
    args = ["run", "walk.py", "--draws", "5", "--tune", "5", "--data-shards", "2"]
    proc = run_ranks(None, args, cwd=tmp_path, timeout=240, extra_env=TWO_DEVICES)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "'walk'" in lines[0] and "not one per row" in lines[0], lines


def test_resume_only_on_the_same_layout(tmp_path, runs):
    """A run stopped by ``--max-time`` resumes with its shards to the draws of the run never
    stopped; without its shards it is refused."""
    (tmp_path / "logistic.py").write_text(LOGISTIC)
    out = tmp_path / "stopped.h5"
    first = _run(tmp_path, out, "--data-shards", "2", "--chunk-draws", "50", "--max-time", "1")
    assert first.returncode == 3, first.stderr[-3000:]
    other = _run(tmp_path, out, "--chunk-draws", "50", "--resume")
    assert other.returncode == 2, other.stderr[-3000:]
    line = error_lines(other.stderr)[0]
    assert "settings differ" in line and "data_shards: checkpoint 2, now 1" in line, line
    same = _run(tmp_path, out, "--data-shards", "2", "--chunk-draws", "50", "--resume")
    assert same.returncode == 0, same.stderr[-3000:]
    posterior, _ = _posterior(out)
    (uninterrupted, _) = runs["shards"]
    for name in ("alpha", "beta", "eta"):
        np.testing.assert_array_equal(posterior[name].values, uninterrupted[name].values)
