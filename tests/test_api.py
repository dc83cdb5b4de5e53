"""``mpi_pymc.sample``: SPMD under mpirun, launched from one process, errors and interrupts.

Every run here is a real ``mpirun`` job; draws are compared with the CLI's, bit for bit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import (
    EIGHT_SCHOOLS,
    EXAMPLES,
    env,
    launch,
    mpirun_or_skip,
    run_ranks,
    start_until_draws,
)

import mpi_pymc
from mpi_pymc.api import default_out, launch_command
from mpi_pymc.core.mpi_env import under_mpi_launcher

DRAWS, TUNE, CHAINS, SEED, CHUNK = 1000, 100, 4, 5, 25
CLI_SETTINGS = ["--draws", str(DRAWS), "--tune", str(TUNE), "--chains", str(CHAINS),
                "--seed", str(SEED), "--chunk-draws", str(CHUNK),
                "--chain-method", "sequential"]  # fmt: skip
API_SETTINGS = (
    f"draws={DRAWS}, tune={TUNE}, chains={CHAINS}, random_seed={SEED}, chunk_draws={CHUNK}, "
    "chain_method='sequential', progressbar=False"
)


def _draws(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        posterior = f["posterior"]  # the variables, not their dimension scales
        found = {f"posterior/{k}": posterior[k][()] for k in posterior if posterior[k].ndim >= 2}
        found.update({f"sample_stats/{k}": f["sample_stats"][k][()] for k in ("lp", "diverging")})
        found["draws_completed"] = f.attrs["draws_completed"][()]
    return found


def _assert_same_draws(path: Path, reference: dict[str, np.ndarray]) -> None:
    got = _draws(path)
    assert set(got) == set(reference)
    for key, values in reference.items():
        np.testing.assert_array_equal(got[key], values, err_msg=key)


def _script(tmp: Path, body: str) -> Path:
    """A user's script that imports the example's model (every rank builds the same one)."""
    path = tmp / "fit.py"
    header = f"import sys\nsys.path.insert(0, {str(EXAMPLES)!r})\n"
    header += "import mpi_pymc\nfrom eight_schools import model\n"
    path.write_text(header + textwrap.dedent(body))
    return path


def _python(script: Path, args: list[str], ranks: int | None = None, timeout: float = 300):
    cmd = [sys.executable, str(script), *args]
    if ranks is not None:
        cmd = [mpirun_or_skip(), "-n", str(ranks), *cmd]
    return launch(cmd, timeout, cwd=script.parent, env=env())


@pytest.fixture(scope="module")
def cli_draws(tmp_path_factory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "cli.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *CLI_SETTINGS, "--out", str(out)], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return _draws(out)


def test_spmd_script_under_mpirun_equals_the_cli(tmp_path, cli_draws):
    script = _script(
        tmp_path,
        f"""
        idata = mpi_pymc.sample(model, {API_SETTINGS}, out=sys.argv[1])
        print("result", type(idata).__name__, idata.attrs["root_seed"],
              dict(idata.posterior.sizes)["draw"], idata.attrs["path"])
        """,
    )
    out = tmp_path / "spmd.h5"
    proc = _python(script, [str(out)], ranks=2)
    assert proc.returncode == 0, proc.stderr
    results = [line for line in proc.stdout.splitlines() if line.startswith("result")]
    assert len(results) == 2, proc.stdout  # every rank gets the result
    assert all(line.split()[2:] == [str(SEED), str(DRAWS), str(out)] for line in results)
    _assert_same_draws(out, cli_draws)


def test_launched_from_one_process_equals_the_cli(tmp_path, cli_draws):
    script = _script(
        tmp_path,
        f"""
        idata = mpi_pymc.sample(model, {API_SETTINGS}, ranks=2, out=sys.argv[1])
        print("result", idata.attrs["ranks"], idata.attrs["stopped_by"])
        """,
    )
    out = tmp_path / "launched.h5"
    proc = _python(script, [str(out)])  # no mpirun around it: sample() starts the ranks
    assert proc.returncode == 0, proc.stderr
    assert "result 2 draws" in proc.stdout
    assert not Path(str(out) + ".launch").exists()  # the pickled model is cleaned up
    _assert_same_draws(out, cli_draws)


def test_interrupt_leaves_a_checkpoint_that_resume_completes(tmp_path, cli_draws):
    script = _script(
        tmp_path,
        f"""
        resume = sys.argv[2] == "resume"
        try:
            mpi_pymc.sample(model, {API_SETTINGS}, ranks=2, out=sys.argv[1], resume=resume)
        except mpi_pymc.RunInterrupted as exc:
            print("interrupted:", exc)
            sys.exit(3)
        print("complete")
        """,
    )
    out = tmp_path / "interrupted.h5"
    proc = start_until_draws(
        [sys.executable, str(script), str(out), "first"], tmp_path, out, 2 * CHUNK, timeout=240
    )
    proc.send_signal(signal.SIGINT)  # what Ctrl-C or a notebook's stop button sends
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the ranks did not stop after the interrupt")
    assert proc.returncode == 3, stderr
    assert "resume=True" in stdout
    done = int(_draws(out)["draws_completed"].min())
    assert 0 < done < DRAWS
    proc2 = _python(script, [str(out), "resume"])
    assert proc2.returncode == 0, proc2.stderr
    assert "complete" in proc2.stdout
    _assert_same_draws(out, cli_draws)


def test_a_failing_rank_raises_with_its_message(tmp_path, monkeypatch):
    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPI_PYMC_INJECT_FAULT", "1:0")
    with pytest.raises(mpi_pymc.RankFailure, match=r"^r1 .*injected fault at draw 0"):
        mpi_pymc.sample(model, draws=20, tune=20, ranks=2, progressbar=False)


def test_a_model_that_cannot_be_pickled_gets_one_line(tmp_path):
    import threading

    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x")
    model.lock = threading.Lock()  # e.g. a handle to a database or a file kept on the model
    with pytest.raises(mpi_pymc.UserError, match="cannot be pickled.*model file"):
        mpi_pymc.sample(model, ranks=2, out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_bad_settings_raise_the_cli_line_before_any_rank_starts(tmp_path):
    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(mpi_pymc.UserError, match=r"^--draws must be a positive integer, got 0$"):
        mpi_pymc.sample(model, draws=0, ranks=2, out=tmp_path / "x.h5")
    with pytest.raises(mpi_pymc.UserError, match="random_seed must be a non-negative integer"):
        mpi_pymc.sample(model, random_seed=1.5, ranks=2)
    with pytest.raises(mpi_pymc.UserError, match="inside `with model:`"):
        mpi_pymc.sample(ranks=2)
    with pytest.raises(mpi_pymc.UserError, match="resume=True needs out="):
        mpi_pymc.sample(model, resume=True, ranks=2)
    assert not list(tmp_path.iterdir())


def test_launched_ranks_and_a_launcher_do_not_mix(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert under_mpi_launcher()
    with pytest.raises(mpi_pymc.UserError, match="drop ranks="):
        mpi_pymc.sample("model.py", ranks=2)


def test_under_mpi_launcher_reads_the_launchers_variables():
    assert not under_mpi_launcher({})
    assert under_mpi_launcher({"PMIX_RANK": "0"})
    assert under_mpi_launcher({"SLURM_STEP_ID": "0", "SLURM_PROCID": "3"})
    assert not under_mpi_launcher({"SLURM_JOB_ID": "7"})  # a batch script, not a step's task


def test_default_out_never_reuses_a_file(tmp_path):
    import types

    model = types.SimpleNamespace(name="hier")
    first = default_out(model, str(tmp_path), now=0)
    Path(first).touch()
    second = default_out(model, str(tmp_path), now=0)
    assert first != second and Path(first).name.startswith("hier-")
    assert Path(second).parent == tmp_path and not Path(second).exists()


def test_default_out_names_a_model_file_by_its_stem(tmp_path):
    path = default_out("models/fit_hier.py:build", str(tmp_path), now=0)
    assert Path(path).name.startswith("fit_hier-")
    assert Path(default_out(Path("a/b.py"), str(tmp_path), now=0)).name.startswith("b-")


def test_launch_command_picks_srun_inside_an_allocation(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert launch_command(3, ["run", "m.pkl"])[1:3] == ["-n", "3"]
    assert launch_command(3, ["run", "m.pkl"])[-4:] == ["-m", "mpi_pymc", "run", "m.pkl"]
    assert launch_command(2, ["x"], "srun")[:3] == ["srun", "-n", "2"]
    with pytest.raises(mpi_pymc.UserError, match="unknown launcher"):
        launch_command(2, ["x"], "qsub")


def test_public_surface_is_declared_and_importing_it_is_cheap():
    assert set(mpi_pymc.__all__) >= {"sample", "UserError", "RankFailure", "RunInterrupted"}
    for name in mpi_pymc.__all__:
        assert getattr(mpi_pymc, name) is not None
    # A notebook or a login node imports it without starting MPI, JAX or PyMC.
    probe = "import sys, mpi_pymc; print(sorted({'mpi4py.MPI', 'jax', 'pymc'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env())
    assert proc.stdout.strip() == "[]", proc.stderr


def test_submit_refuses_bad_resources_with_one_line(tmp_path):
    import mpi_pymc

    with pytest.raises(mpi_pymc.UserError, match="--nodes must be"):
        mpi_pymc.submit(str(EIGHT_SCHOOLS), time="00:10:00", nodes=0, out=str(tmp_path / "x.h5"))
    with pytest.raises(mpi_pymc.UserError, match="HH:MM:SS"):
        mpi_pymc.submit(str(EIGHT_SCHOOLS), time="ten minutes", out=str(tmp_path / "x.h5"))
    with pytest.raises(mpi_pymc.UserError, match="does not divide the 8 ranks"):
        mpi_pymc.submit(str(EIGHT_SCHOOLS), time="00:10:00", nodes=2, gpus_per_node=4,
                        data_shards=3, out=str(tmp_path / "x.h5"))  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_sample_prints_as_pm_sample_does_and_summary_prints_the_table(tmp_path):
    script = _script(
        tmp_path,
        """
        idata = mpi_pymc.sample(model, draws=50, tune=50, random_seed=3, ranks=2,
                                out=sys.argv[1])
        print("--- summary")
        mpi_pymc.summary(idata)
        """,
    )
    out = tmp_path / "fit.h5"
    proc = _python(script, [str(out)])
    assert proc.returncode == 0, proc.stderr
    ran, asked = proc.stdout.split("--- summary\n")
    # No table unless asked; the start line names the model, not the pickle the ranks load.
    assert "parameter " not in ran and "r_hat" not in ran, ran
    assert "the model [mu, tau, theta_trans]" in ran.splitlines()[0], ran
    assert ".launch" not in ran and "model.pkl" not in ran, ran
    # PyMC's own warning for so few draws, then one closing line naming the file.
    assert "The number of samples is too small to check convergence reliably." in ran
    assert ran.splitlines()[-1].startswith("Sampling 4 chains for 50 tune and 50 draw iterations")
    assert ran.splitlines()[-1].endswith(str(out)), ran
    # The relayed progress names the start-up phases.
    assert "compiling" in proc.stderr and "sampling" in proc.stderr, proc.stderr
    assert asked.startswith("parameter "), asked
    assert "theta[Choate]" in asked
