"""``python -m mpi_pymc postprocess``: log_likelihood equal to PyMC's, posterior predictive
independent of the rank count and distributed like PyMC's, disk preflight, killed passes.

Every pass is a real ``mpirun``; both writers are covered (mpio needs an MPI-enabled h5py).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import EIGHT_SCHOOLS, error_lines, run_ranks, wait_ranks_gone
from tolerances import ARVIZ_MAJOR, SIGMAS, relative_difference

from mpi_pymc import open_result
from mpi_pymc.diagnostics import maths as diagnostics

MPIO = bool(h5py.get_config().mpi)
needs_mpio = pytest.mark.skipif(not MPIO, reason="h5py is not MPI-enabled (make parallel-hdf5)")
WRITERS = [pytest.param("mpio", marks=[needs_mpio, pytest.mark.mpio]), "shards"]
SAMPLING = ["--tune", "40", "--chains", "3", "--seed", "5", "--chunk-draws", "25",
            "--chain-method", "sequential"]  # fmt: skip
BOTH = ["--log-likelihood", "--posterior-predictive"]

TWO_OBSERVED = textwrap.dedent(
    """
    import numpy as np
    import pymc as pm

    group_of = np.array([0, 0, 1, 1, 2, 2])
    coords = {"group": ["a", "b", "c"], "obs": np.arange(6)}
    with pm.Model(coords=coords) as model:
        mu = pm.Normal("mu", 0.0, 1.0, dims="group")
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", mu[group_of], sigma, observed=[0.1, -0.3, 1.2, 0.8, -1.0, -0.4],
                  dims="obs")
        pm.Poisson("counts", pm.math.exp(mu), observed=[1, 3, 0], dims="group")
    """
)


def _sample(directory: Path, model: Path, io: str, draws: int = 60) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "fit.h5"
    proc = run_ranks(
        1, ["run", str(model), *SAMPLING, "--draws", str(draws), "--io", io, "--out", str(out)],
        cwd=directory,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def _postprocess(ranks: int, model: Path, out: Path, *options: str, **kwargs):
    return run_ranks(
        ranks, ["postprocess", str(model), str(out), *options], cwd=out.parent, **kwargs
    )


def _copy(out: Path, directory: Path) -> Path:
    """The output (and its shards) in another folder, under the same name: the virtual
    datasets name their shards relative to the main file."""
    directory.mkdir(parents=True)
    shutil.copy(out, directory / out.name)
    parts = Path(str(out) + ".parts")
    if parts.is_dir():
        shutil.copytree(parts, directory / parts.name)
    return directory / out.name


def _values(path: Path, group: str) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {name: f[group][name][()] for name in f[group] if not f[group][name].is_scale}


def _load_model(path: Path):
    from mpi_pymc.model.loading import load_model

    return load_model(str(path))


def _pymc_log_likelihood(result, model) -> dict[str, np.ndarray]:
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = pm.compute_log_likelihood(
            result, model=model, extend_inferencedata=False, progressbar=False
        )
    return {name: np.asarray(found[name].values) for name in found.data_vars}


def _assert_log_likelihood_is_pymcs(out: Path, model_file: Path) -> None:
    result = open_result(str(out))
    ours = _values(out, "log_likelihood")
    reference = _pymc_log_likelihood(result, _load_model(model_file))
    assert set(ours) == set(reference)
    for name, values in reference.items():
        assert ours[name].shape == values.shape
        assert np.max(relative_difference(ours[name], values)) < 1e-10, name


def _loo(out: Path):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(open_result(str(out)))


@pytest.fixture(scope="module", params=WRITERS)
def eight_schools(request, tmp_path_factory) -> Path:
    """One finished eight-schools run per writer, shared by the tests that copy it."""
    return _sample(tmp_path_factory.mktemp(request.param), EIGHT_SCHOOLS, request.param)


def test_groups_equal_pymc_and_do_not_depend_on_the_rank_count(eight_schools, tmp_path):
    before = _values(eight_schools, "posterior")
    two = _copy(eight_schools, tmp_path / "two")
    proc = _postprocess(2, EIGHT_SCHOOLS, two, *BOTH, "--block-draws", "16")
    assert proc.returncode == 0, proc.stderr
    assert "to write" in proc.stdout and "blocks of 16 draws" in proc.stdout
    one = _copy(eight_schools, tmp_path / "one")
    proc = _postprocess(None, EIGHT_SCHOOLS, one, *BOTH, "--block-draws", "16")
    assert proc.returncode == 0, proc.stderr
    for group in ("log_likelihood", "posterior_predictive"):
        for name, values in _values(two, group).items():
            np.testing.assert_array_equal(values, _values(one, group)[name])
    for name, values in _values(two, "posterior").items():
        np.testing.assert_array_equal(values, before[name])

    result = open_result(str(two))
    ll = result["log_likelihood"]["y"]
    assert ll.dims == ("chain", "draw", "school") and ll.shape == (3, 60, 8)
    assert result["log_likelihood"]["school"].values[6] == "St. Paul's"
    _assert_log_likelihood_is_pymcs(two, EIGHT_SCHOOLS)
    assert np.isfinite(float(_loo(two).elpd_loo if ARVIZ_MAJOR == 0 else _loo(two)["elpd"]))
    with h5py.File(two) as f:
        assert f["log_likelihood"].attrs["mpi_pymc_complete"] == 1
        assert not f["posterior_predictive"]["y"].is_virtual  # packed at the pass's end


def test_posterior_predictive_is_distributed_like_pymcs(eight_schools, tmp_path):
    import pymc as pm

    out = _copy(eight_schools, tmp_path / "pp")
    proc = _postprocess(2, EIGHT_SCHOOLS, out, "--posterior-predictive")
    assert proc.returncode == 0, proc.stderr
    ours = _values(out, "posterior_predictive")["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pm.sample_posterior_predictive(
            open_result(str(out)), model=_load_model(EIGHT_SCHOOLS), random_seed=1,
            progressbar=False, extend_inferencedata=False,
        )["posterior_predictive"]["y"].values  # fmt: skip
    assert ours.shape == theirs.shape
    # Both condition on the same posterior draws: only the observation noise differs.
    for quantity in (lambda x: x, lambda x: (x > np.median(theirs, axis=(0, 1))).astype(float)):
        a, b = quantity(ours), quantity(theirs)
        mcse = [x.std(axis=(0, 1), ddof=1) / np.sqrt(diagnostics.ess_mean(x)) for x in (a, b)]
        bound = SIGMAS * np.hypot(*mcse)
        assert np.all(np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))) < bound)


@pytest.mark.parametrize("io", WRITERS)
def test_several_observed_variables_with_dims(tmp_path, io):
    model_file = tmp_path / "two_observed.py"
    model_file.write_text(TWO_OBSERVED)
    out = _sample(tmp_path / "run", model_file, io, draws=30)
    proc = _postprocess(2, model_file, out, "--log-likelihood", "--thin", "2")
    assert proc.returncode == 0, proc.stderr
    result = open_result(str(out))
    assert result["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    assert result["log_likelihood"]["counts"].dims == ("chain", "draw", "group")
    np.testing.assert_array_equal(result["log_likelihood"]["draw"].values, np.arange(0, 30, 2))
    # PyMC's on the same (thinned) draws.
    ours = _values(out, "log_likelihood")
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posterior = result["posterior"].isel(draw=slice(None, None, 2))
        reference = pm.compute_log_likelihood(
            _as_idata(posterior), model=_load_model(model_file), extend_inferencedata=False,
            progressbar=False,
        )  # fmt: skip
    for name in ("y", "counts"):
        assert np.max(relative_difference(ours[name], reference[name].values)) < 1e-10


def _as_idata(posterior):
    import arviz as az

    if ARVIZ_MAJOR == 0:
        return az.InferenceData(posterior=posterior)
    import xarray as xr

    return xr.DataTree.from_dict({"posterior": posterior.to_dataset()})


def test_a_complete_group_is_kept_without_overwrite_groups(eight_schools, tmp_path):
    out = _copy(eight_schools, tmp_path / "again")
    assert _postprocess(None, EIGHT_SCHOOLS, out, "--log-likelihood").returncode == 0
    first = _values(out, "log_likelihood")
    proc = _postprocess(None, EIGHT_SCHOOLS, out, "--log-likelihood")
    assert proc.returncode == 2
    assert "--overwrite-groups" in error_lines(proc.stderr)[0]
    proc = _postprocess(None, EIGHT_SCHOOLS, out, "--log-likelihood", "--overwrite-groups")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_values(out, "log_likelihood")["y"], first["y"])


def test_a_killed_pass_leaves_the_posterior_and_can_be_repeated(eight_schools, tmp_path):
    out = _copy(eight_schools, tmp_path / "killed")
    before = _values(out, "posterior")
    proc = _postprocess(
        2, EIGHT_SCHOOLS, out, *BOTH, "--block-draws", "16",
        extra_env={"MPI_PYMC_KILL_AT_CHAIN": "1"},
    )  # fmt: skip
    assert proc.returncode != 0
    wait_ranks_gone(out)
    for name, values in _values(out, "posterior").items():
        np.testing.assert_array_equal(values, before[name])
    proc = _postprocess(2, EIGHT_SCHOOLS, out, *BOTH, "--block-draws", "16")
    assert proc.returncode == 0, proc.stderr
    _assert_log_likelihood_is_pymcs(out, EIGHT_SCHOOLS)
    parts = Path(str(out) + ".parts")
    if parts.is_dir():  # the killed pass's shards are gone, the new ones mapped
        assert len(list(parts.glob("post-*"))) == 1


def test_too_little_disk_space_exits_2_and_writes_nothing(eight_schools, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        out = _copy(eight_schools, mount / "fit")
        # Leave less free space than the groups' metadata allowance alone.
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 256 * 1024))
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        listing = sorted(str(p) for p in mount.rglob("*"))
        proc = _postprocess(None, EIGHT_SCHOOLS, out, *BOTH)
        assert proc.returncode == 2, proc.stderr
        assert "not enough disk space" in error_lines(proc.stderr)[0]
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
        assert sorted(str(p) for p in mount.rglob("*")) == listing
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_the_python_api_adds_the_groups_in_this_process(eight_schools, tmp_path):
    import mpi_pymc

    out = _copy(eight_schools, tmp_path / "api")
    result = mpi_pymc.postprocess(str(out), _load_model(EIGHT_SCHOOLS), var_names=["y"])
    assert result["log_likelihood"]["y"].shape == (3, 60, 8)
    _assert_log_likelihood_is_pymcs(out, EIGHT_SCHOOLS)
    with pytest.raises(mpi_pymc.UserError, match="--overwrite-groups"):
        mpi_pymc.postprocess(str(out), _load_model(EIGHT_SCHOOLS))


def test_run_adds_the_groups_on_4_ranks_as_a_one_rank_pass_does(tmp_path):
    """``run --log-likelihood --posterior-predictive`` on 4 ranks: PyMC's log-likelihood, and
    both groups bit-identical to a later pass over the same draws on one rank."""
    out = tmp_path / "run" / "fit.h5"
    out.parent.mkdir()
    settings = ["--tune", "40", "--draws", "40", "--chains", "4", "--seed", "5",
                "--chunk-draws", "20", "--chain-method", "sequential"]  # fmt: skip
    proc = run_ranks(4, ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(out), *BOTH],
                     cwd=out.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "to write" in proc.stdout  # the pass's plan line, with the size it checked
    _assert_log_likelihood_is_pymcs(out, EIGHT_SCHOOLS)
    again = _copy(out, tmp_path / "again")
    proc = _postprocess(None, EIGHT_SCHOOLS, again, *BOTH, "--overwrite-groups")
    assert proc.returncode == 0, proc.stderr
    for group in ("log_likelihood", "posterior_predictive"):
        ours = _values(out, group)
        assert ours
        for name, values in _values(again, group).items():
            np.testing.assert_array_equal(ours[name], values, err_msg=f"{group}/{name}")
