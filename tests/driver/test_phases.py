"""The driver's phases that hold logic, one by one, without MPI."""

from __future__ import annotations

import numpy as np
import pytest

from mpi_pymc.core.config import RunConfig, UserError, validate
from mpi_pymc.core.errors import AgreedError
from mpi_pymc.driver.claim import _check_output, _check_output_directory
from mpi_pymc.driver.messages import resume_line, start_line, summary_lines
from mpi_pymc.driver.model import fingerprint_disagreement
from mpi_pymc.driver.settings import guard_launcher
from mpi_pymc.sampling.stopping import STOP_DRAWS, STOP_GOAL, STOP_MAX_TIME


def test_fingerprints_that_agree_pass_and_disagreeing_ranks_are_named():
    assert fingerprint_disagreement(["a" * 64] * 3) is None
    message = fingerprint_disagreement(["a" * 64, "b" * 64, "a" * 64])
    assert message is not None
    assert "ranks [0, 2] -> aaaaaaaaaaaa" in message and "ranks [1] -> bbbbbbbbbbbb" in message
    assert "seed any random data" in message


def test_srun_without_mpi_wiring_is_refused():
    guard_launcher(4, {"SLURM_STEP_NUM_TASKS": "4"})  # a real world of 4: fine
    guard_launcher(1, {"SLURM_STEP_NUM_TASKS": "1"})
    guard_launcher(1, {})
    with pytest.raises(AgreedError, match="srun --mpi=pmix"):
        guard_launcher(1, {"SLURM_STEP_NUM_TASKS": "4"})


def test_a_model_object_needs_no_file_but_a_missing_model_is_an_error():
    config = validate(RunConfig(model_path=None, out="x.h5"), 2, model_given=True)
    assert config.chains == 4 and config.out == "x.h5"
    with pytest.raises(UserError, match="no model given"):
        validate(RunConfig(model_path=None), 1)


def test_output_checks(tmp_path):
    out = tmp_path / "fit.h5"
    config = RunConfig(model_path="m.py", out=str(out))
    _check_output(config)  # new file in a writable folder
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match="already exists: pass --overwrite"):
        _check_output(config)
    _check_output(config.replace(overwrite=True))
    with pytest.raises(UserError, match="--resume given but"):
        _check_output(config.replace(out=str(tmp_path / "none.h5"), resume=True))
    _check_output_directory(config)
    with pytest.raises(UserError, match="does not exist: create it first"):
        _check_output_directory(config.replace(out=str(tmp_path / "no" / "fit.h5")))
    assert out.read_bytes() == b"precious"


def test_start_line_names_the_model_and_settings():
    config = RunConfig(model_path="m.py", chains=8, seed=3, chain_method="sequential")
    line = start_line(config, 2, resuming=False)
    assert line.startswith("mpi_pymc ") and "sampling m.py on 2 rank(s), 8 chains" in line
    assert "seed 3" in line
    assert "resuming the model" in start_line(config.replace(model_path=None), 1, resuming=True)


def _summary() -> dict:
    stats = {
        "ess_bulk": np.array([500.0, 700.0]),
        "ess_tail": np.array([450.0, 800.0]),
        "r_hat": np.array([1.001, 1.004]),
    }
    return {"table": "TABLE", "warnings": ["few draws"], "stats": stats, "json": {}}


def test_summary_lines_report_the_goal_and_where_the_draws_are():
    config = RunConfig(model_path="m.py", chains=4, draws=1000, out="o.h5", until_ess=400)
    timings = {"total": 12.34}
    reached = summary_lines(config, STOP_GOAL, 300, _summary(), 2, "shards", timings)
    assert reached[0] == "TABLE"
    # Divergences come first: they say the draws can be biased whatever R-hat and ESS say.
    assert reached[1].startswith("warning: 2 divergent transition(s) after warmup (0.17% of 1200")
    assert "--target-accept from 0.8 (to" in reached[1]
    assert reached[2] == "warning: few draws"
    assert reached[3].startswith("reached --until-ess 400") and "after 300 of at most" in reached[3]
    assert reached[3].endswith("min bulk ESS 500, min tail ESS 450, max R-hat 1.004")
    assert reached[-1].startswith("2 divergences. Wrote 4 chains x 300 draws to o.h5 (shards)")
    assert reached[-1].endswith("Wall time 12.3s")
    missed = summary_lines(config, STOP_DRAWS, 1000, _summary(), 0, "mpio", timings)
    assert missed[2].startswith(
        "warning: --until-ess 400 (R-hat <= 1.01) not reached within --draws 1000"
    )
    bulk_only = summary_lines(config.replace(until_tail_ess=0), STOP_GOAL, 300, _summary(), 2,
                              "shards", timings)  # fmt: skip
    assert bulk_only[3].startswith("reached --until-ess 400 (no tail ESS, R-hat <= 1.01) after")
    tail_100 = summary_lines(config.replace(until_tail_ess=100), STOP_DRAWS, 1000, _summary(), 0,
                             "mpio", timings)  # fmt: skip
    assert tail_100[2].startswith("warning: --until-ess 400 (tail ESS 100, R-hat <= 1.01) not")
    plain = config.replace(until_ess=None)
    assert len(summary_lines(plain, STOP_DRAWS, 1000, _summary(), 0, "mpio", timings)) == 3


def test_resume_line_says_how_far_and_how_to_continue():
    config = RunConfig(model_path="m.py", draws=1000, tune=500, out="o.h5")
    line = resume_line(config, STOP_MAX_TIME, 0, 250)
    assert line.startswith("stopped by --max-time after 0 of 1000 draws (warmup 250/500)")
    assert line.endswith("plus --resume (output o.h5)")


def test_a_finished_cli_process_survives_a_late_walltime_signal():
    import subprocess
    import sys

    script = (
        "import os, signal, time\n"
        "from mpi_pymc.driver.signals import StopRequest, ignore_stop_signals\n"
        "StopRequest().install()\n"  # as a run leaves them: handlers that only set a flag
        "ignore_stop_signals()\n"  # what the CLI does once its run has returned
        "for sig in (signal.SIGUSR1, signal.SIGTERM):\n"
        "    os.kill(os.getpid(), sig)\n"
        "time.sleep(0.2)\n"
        "print('alive')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "alive"), proc.stderr


def _tiny_sampler():
    import pymc as pm

    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.sampling.chain_group import ChainGroupSampler

    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=3)
    compiled = compile_model(model, "float64")
    config = RunConfig(model_path="m.py", chains=2, tune=20, draws=10, chunk_draws=5)
    return model, compiled, ChainGroupSampler(compiled, config.replace(chain_method="sequential"))


@pytest.mark.parametrize("background", [True, False])
def test_programs_compile_from_the_states_shapes_in_a_thread_or_at_join(background):
    """The warmup and sampling programs compile from the state's shapes (in a thread while the
    chains initialise, or at join); the real state then runs in them."""
    import types

    from mpi_pymc.core import seeding
    from mpi_pymc.driver.chains import BackgroundCompile
    from mpi_pymc.sampling.chain_group import initial_positions

    model, compiled, sampler = _tiny_sampler()
    compiling = BackgroundCompile(types.SimpleNamespace(rank=0, size=1), sampler, 2, background)
    assert compiling.mine == ["warmup", "sample", "sample_diag"]
    assert (compiling.thread is not None) == background
    positions = initial_positions(compiled, model, 1, range(2)).positions
    state = sampler.init(seeding.sampler_keys(1, range(2)), positions)
    compiling.join()
    assert compiling.thread is None or not compiling.thread.is_alive()
    state = sampler.warmup(state, 5)
    _, draws, _ = sampler.sample(state, 5)
    assert draws.shape == (2, 5, 3) and np.all(np.isfinite(draws))


def test_a_failed_background_compile_is_raised_by_join(monkeypatch):
    import types

    from mpi_pymc.driver.chains import BackgroundCompile

    _, _, sampler = _tiny_sampler()

    def broken(*args, **kwargs):
        raise RuntimeError("XLA ran out of memory")

    monkeypatch.setattr(sampler, "precompile", broken)
    compiling = BackgroundCompile(types.SimpleNamespace(rank=1, size=2), sampler, 2, True)
    # The last of 2 ranks takes the programs the first leaves: the auto metric's sampling
    # programs with and without the low-rank columns.
    assert compiling.mine == ["sample", "sample_diag"]
    with pytest.raises(RuntimeError, match="out of memory"):
        compiling.join()
