"""Signals, checkpoints and --resume under real mpirun: resumed equals uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import (
    EIGHT_SCHOOLS,
    error_lines,
    rank_pids,
    run_ranks,
    start_until_checkpoint,
    wait_ranks_gone,
)

from mpi_pymc.output.checkpoint import checkpoint_path, settings_differences

SETTINGS = ["--draws", "1000", "--tune", "100", "--chains", "4", "--seed", "5",
            "--chunk-draws", "25", "--chain-method", "sequential"]  # fmt: skip


def _interrupt(tmp: Path, out: Path, ranks: int, sig: int, after_draws: int = 100):
    """Start a run, send ``sig`` to ONE rank once some draws are flushed; return the process."""
    args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)]
    proc = start_until_checkpoint(ranks, args, tmp, out, after_draws)
    pids = rank_pids(out)
    assert len(pids) == ranks, pids
    os.kill(pids[-1], sig)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("ranks hung after the signal")
    wait_ranks_gone(out)
    return proc.returncode, stdout, stderr


def _posterior(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        out = {f"posterior/{k}": f["posterior"][k][()] for k in ("mu", "tau", "theta")}
        out.update({f"sample_stats/{k}": f["sample_stats"][k][()] for k in ("lp", "step_size")})
        out["draws_completed"] = f.attrs["draws_completed"][()]
        if "divergences" in f.attrs:  # a finished run's, over all its segments
            out["divergences"] = f.attrs["divergences"]
        if "diagnostics" in f.attrs:
            stats = json.loads(f.attrs["diagnostics"])
            out["r_hat"] = np.array(stats["r_hat"])
            out["ess_bulk"] = np.array(stats["ess_bulk"])
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "ref.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert not Path(checkpoint_path(out)).exists()  # a finished run leaves no checkpoint
    return _posterior(out)


@pytest.mark.parametrize(
    "sig,first_ranks,resume_ranks",
    [(signal.SIGTERM, 2, 2), (signal.SIGUSR1, 2, 3), (signal.SIGTERM, 3, 1),
     (signal.SIGKILL, 2, 2)],
)  # fmt: skip
def test_signal_checkpoint_then_resume_equals_uninterrupted(
    tmp_path, uninterrupted, sig, first_ranks, resume_ranks
):
    out = tmp_path / "run.h5"
    code, stdout, stderr = _interrupt(tmp_path, out, first_ranks, sig)
    if sig == signal.SIGKILL:  # no chance to react: the launcher ends the others
        assert code not in (0, 3), stderr
    else:
        assert code == 3, stderr
        assert "checkpoint written" in stdout
    partial = _posterior(out)
    done = int(partial["draws_completed"].min())
    assert 0 < done < 1000
    # Every draw the file claims is there, and equals the uninterrupted run's.
    for key in ("posterior/mu", "posterior/theta", "sample_stats/lp"):
        np.testing.assert_array_equal(partial[key][:, :done], uninterrupted[key][:, :done])
    proc = run_ranks(
        resume_ranks, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out), "--resume"],
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    resumed = _posterior(out)
    assert np.isfinite(resumed["r_hat"]).all()  # diagnostics see the draws of every segment
    for key, values in uninterrupted.items():
        if key in ("r_hat", "ess_bulk"):  # reductions over other rank counts: last bits
            np.testing.assert_allclose(resumed[key], values, rtol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(resumed[key], values, err_msg=key)


def _checkpointed_run(tmp_path: Path) -> Path:
    out = tmp_path / "run.h5"
    code, _, stderr = _interrupt(tmp_path, out, 2, signal.SIGTERM)
    assert code == 3, stderr
    return out


def test_resume_refuses_changed_settings_model_and_corruption(tmp_path, uninterrupted):
    out = _checkpointed_run(tmp_path)
    before = Path(out).read_bytes()

    def resume(*extra, model=EIGHT_SCHOOLS):
        args = ["run", str(model), *SETTINGS, "--out", str(out), "--resume", *extra]
        return run_ranks(2, args, cwd=tmp_path, timeout=120)

    proc = resume("--target-accept", "0.95")
    assert proc.returncode == 2
    assert "settings differ" in error_lines(proc.stderr)[0]
    assert "target_accept" in error_lines(proc.stderr)[0]

    other = tmp_path / "other.py"
    other.write_text(EIGHT_SCHOOLS.read_text().replace("sigma=5.0", "sigma=6.0"))
    proc = resume(model=other)
    assert proc.returncode == 2
    assert "model differs" in error_lines(proc.stderr)[0]

    # A crash can tear the latest checkpoint; with the previous one torn too, nothing resumes.
    latest = Path(checkpoint_path(out))
    previous = Path(checkpoint_path(out) + ".prev")
    kept = previous.read_bytes()
    for manifest in (latest, previous):
        manifest.write_bytes(manifest.read_bytes()[: len(manifest.read_bytes()) // 2])
    proc = resume()
    assert proc.returncode == 2
    assert "corrupted" in error_lines(proc.stderr)[0]
    assert Path(out).read_bytes() == before  # refused resumes never touch the output

    # With the previous one intact, the run resumes from it to the uninterrupted draws.
    previous.write_bytes(kept)
    proc = resume()
    assert proc.returncode == 0, proc.stderr
    assert "resuming from the previous checkpoint" in proc.stdout + proc.stderr
    resumed = _posterior(out)
    for key in ("posterior/mu", "posterior/theta", "sample_stats/lp"):
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


def test_exception_on_one_rank_ends_every_rank_fast_and_keeps_flushed_draws(tmp_path):
    out = tmp_path / "fail.h5"
    proc = run_ranks(
        3,
        ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)],
        cwd=tmp_path,
        timeout=120,
        extra_env={"MPI_PYMC_INJECT_FAULT": "1:200"},
    )
    assert proc.returncode not in (0, 2, 3)
    assert "r1 " in proc.stderr and "| error: RuntimeError: injected fault" in proc.stderr
    partial = _posterior(out)
    done = int(partial["draws_completed"].min())
    assert done >= 200 - 25  # the chunks before the failure were flushed and claimed
    assert np.isfinite(partial["posterior/mu"][:, :done]).all()


def test_hmc_adaptation_groups_resume_after_a_failure_equals_uninterrupted(tmp_path):
    """--adapt-group 2, vectorized: the checkpoint holds each chain's share of its group's
    settings, so a run that failed mid-sampling resumes to the uninterrupted draws."""
    settings = ["--draws", "150", "--tune", "60", "--chains", "4", "--seed", "5",
                "--chunk-draws", "25", "--sampler", "hmc", "--adapt-group", "2"]  # fmt: skip
    ref, out = tmp_path / "ref.h5", tmp_path / "run.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(ref)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_ranks(
        2,
        ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(out)],
        cwd=tmp_path,
        extra_env={"MPI_PYMC_INJECT_FAULT": "1:100"},
    )
    assert proc.returncode not in (0, 2, 3), proc.stderr
    done = int(_posterior(out)["draws_completed"].min())
    assert 0 < done < 150
    proc = run_ranks(
        2, ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(out), "--resume"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    resumed, uninterrupted = _posterior(out), _posterior(ref)
    for key in ("posterior/mu", "posterior/theta", "sample_stats/lp", "sample_stats/step_size"):
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


def test_a_checkpoint_from_before_adapt_group_still_resumes():
    """Checkpoints written before --adapt-group existed ran each chain alone (G = 1)."""
    old = {"draws": 1000, "sampler": "hmc"}
    assert settings_differences(old, {**old, "adapt_group": 1}) == []
    assert settings_differences(old, {**old, "adapt_group": 4}) == [
        "adapt_group: checkpoint 1, now 4"
    ]
    # Nor data shards: the whole data on one device.
    assert settings_differences(old, {**old, "data_shards": 1, "data_row_dim": None}) == []
    assert settings_differences(old, {**old, "data_shards": 2}) == [
        "data_shards: checkpoint 1, now 2"
    ]


@pytest.mark.parametrize("kind", ["low_rank", "dense"])  # the default (auto) is tested above
def test_each_metric_resumes_on_another_rank_count_to_the_uninterrupted_draws(tmp_path, kind):
    """The metric (its low-rank columns, or dense) is in the checkpointed state: a run that
    failed mid-sampling on 2 ranks resumes on 1 to the draws of an uninterrupted 2-rank run."""
    settings = ["--draws", "150", "--tune", "200", "--chains", "4", "--seed", "5", "--metric",
                kind, "--chunk-draws", "25", "--chain-method", "sequential"]  # fmt: skip
    ref, out = tmp_path / "ref.h5", tmp_path / "run.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(ref)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if kind == "dense":  # eight schools has 10 parameters: every direction is in use
        with h5py.File(ref) as f:
            assert np.asarray(f.attrs["metric_rank"]).tolist() == [10] * 4
    proc = run_ranks(
        2,
        ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(out)],
        cwd=tmp_path,
        extra_env={"MPI_PYMC_INJECT_FAULT": "1:100"},
    )
    assert proc.returncode not in (0, 2, 3), proc.stderr
    assert 0 < int(_posterior(out)["draws_completed"].min()) < 150
    proc = run_ranks(
        1, ["run", str(EIGHT_SCHOOLS), *settings, "--out", str(out), "--resume"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    resumed, uninterrupted = _posterior(out), _posterior(ref)
    for key in ("posterior/mu", "posterior/theta", "sample_stats/lp", "sample_stats/step_size"):
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)
