"""The job templates in jobs/, submitted to a real SLURM with ``sbatch --wait``.

Skipped unless a SLURM controller answers ``sinfo`` (``SLURM_CONF`` from the environment is
honoured). Locally or in CI: ``bash .ci/slurm.sh up`` starts a private one-node cluster and
prints the ``export SLURM_CONF=...`` to use; this file also finds that cluster on its own.
Each job runs in the test's tmp dir with this interpreter and this checkout (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import arviz as az
import h5py
import numpy as np
import pytest
from helpers import EIGHT_SCHOOLS, EXAMPLES, ROOT, env

from mpi_pymc import jobscript

pytestmark = pytest.mark.slurm

JOBS = ROOT / "jobs"
PRIVATE_CLUSTER = Path(os.environ.get("MPI_PYMC_SLURM_DIR", "/tmp/mpi_pymc_slurm")) / "slurm.conf"
SMALL = ["--draws", "50", "--tune", "50"]
USABLE_STATES = {"idle", "mixed", "allocated", "completing"}


def _sinfo(extra_env: dict[str, str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%P %T"],
            env={**os.environ, **extra_env}, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 5 s"
    if proc.returncode != 0:
        return False, f"sinfo failed: {proc.stderr.strip()}"
    return True, proc.stdout


@pytest.fixture(scope="module")
def slurm() -> dict:
    """The environment for sbatch, and the default partition; skips without a SLURM."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip("no SLURM here (sinfo/sbatch not on PATH); `bash .ci/slurm.sh up` starts one")
    extra: dict[str, str] = {}
    ok, answer = _sinfo(extra)
    if not ok and "SLURM_CONF" not in os.environ and PRIVATE_CLUSTER.exists():
        extra = {"SLURM_CONF": str(PRIVATE_CLUSTER)}
        ok, answer = _sinfo(extra)
    if not ok:
        pytest.skip(f"no SLURM controller reachable ({answer}); `bash .ci/slurm.sh up` starts one")
    rows = [line.split() for line in answer.splitlines() if line.strip()]
    usable = [p for p, state in rows if state.rstrip("*~#!%$@^-") in USABLE_STATES]
    if not usable:
        pytest.skip(f"SLURM answers but no node is usable: {answer.strip()}")
    default = next((p for p in usable if p.endswith("*")), usable[0]).rstrip("*")
    job_env = env()  # this checkout on PYTHONPATH, Open MPI allowed to run as root
    job_env.update(extra)
    job_env["MPI_PYMC_PYTHON"] = sys.executable
    for name in [k for k in job_env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        if name != "SLURM_CONF":
            job_env.pop(name)  # pytest itself may run inside a SLURM job
    return {"env": job_env, "partition": default}


def submit(slurm: dict, cwd: Path, args: list[str], timeout: float = 300, extra_env=None):
    """``sbatch --wait ARGS`` in ``cwd``; returns (exit code, job id, job name)."""
    name = f"mpt-{uuid.uuid4().hex[:8]}"
    cmd = ["sbatch", "--wait", "--parsable", f"--job-name={name}",
           f"--partition={slurm['partition']}", *args]  # fmt: skip
    environment = {**slurm["env"], **(extra_env or {})}
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        subprocess.run(["scancel", f"--name={name}"], env=environment, timeout=10)
        pytest.fail(f"{' '.join(cmd)} still waiting after {timeout}s:\n{logs(cwd)}")
    match = re.match(r"^(\d+)", proc.stdout.strip())
    assert match, f"sbatch printed no job id: {proc.stdout}\n{proc.stderr}"
    return proc.returncode, match[1], name


def logs(cwd: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(cwd.glob("*.out")))


def render(cwd: Path, argv: list[str]) -> Path:
    """``python -m mpi_pymc jobscript ARGV -o job.sbatch`` (through a stand-in CLI parser)."""
    parser = argparse.ArgumentParser(prog="python -m mpi_pymc")
    jobscript.add_parser(parser.add_subparsers(dest="command"))
    path = cwd / "job.sbatch"
    args = parser.parse_args(["jobscript", *argv, "--python", sys.executable, "-o", str(path)])
    assert jobscript.main(args) == 0
    return path


def check_result(path: Path, chains: int, draws: int) -> az.InferenceData:
    idata = az.from_netcdf(path)
    posterior = idata.posterior
    assert posterior.sizes["chain"] == chains and posterior.sizes["draw"] == draws
    for name in posterior.data_vars:
        assert np.isfinite(posterior[name].values).all(), name
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f.attrs["draws_completed"], [draws] * chains)
    return idata


def test_single_node_template_rendered_for_cpu(slurm, tmp_path):
    script = render(
        tmp_path,
        [str(EIGHT_SCHOOLS), "--template", "single_node_gpus", "--cpu", "--ranks-per-node", "2",
         "--cpus-per-rank", "1", "--time", "00:05:00", *SMALL, "--seed", "3",
         "--out", "es-%j.h5"],
    )  # fmt: skip
    sbatch_lines = [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]
    assert not [line for line in sbatch_lines if "--gpu" in line]
    code, job, name = submit(slurm, tmp_path, [str(script)])
    assert code == 0, logs(tmp_path)
    log = (tmp_path / f"{name}-{job}.out").read_text()
    assert "2 ranks" in log and "done:" in log
    check_result(tmp_path / f"es-{job}.h5", chains=8, draws=50)  # 2 ranks x 4 chains


ROWS_MODEL = """
import numpy as np
import pymc as pm

rng = np.random.default_rng(3)
X = rng.normal(size=(200, 2))
y = (rng.random(200) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0]))))).astype("int8")
with pm.Model() as model:
    beta = pm.Normal("beta", 0.0, 1.0, shape=2)
    pm.Bernoulli("y", logit_p=pm.Data("X", X) @ beta, observed=y)
"""


def test_data_shards_template_rendered_for_cpu(slurm, tmp_path):
    """jobs/data_shards.sbatch: 2 ranks of one device as 2 data shards of one chain group, the
    shard group one JAX job started under srun; one output file, no shard folder left."""
    (tmp_path / "rows.py").write_text(ROWS_MODEL)
    script = render(
        tmp_path,
        [str(tmp_path / "rows.py"), "--template", "data_shards", "--cpu", "--ranks-per-node",
         "2", "--cpus-per-rank", "1", "--time", "00:10:00", "--data-shards", "2",
         "--chains-per-rank", "2", *SMALL, "--seed", "6", "--out", "rows-%j.h5"],
    )  # fmt: skip
    code, job, name = submit(slurm, tmp_path, [str(script)])
    assert code == 0, logs(tmp_path)
    log = (tmp_path / f"{name}-{job}.out").read_text()
    assert "2 ranks" in log and "done:" in log, log
    check_result(tmp_path / f"rows-{job}.h5", chains=2, draws=50)  # 1 chain group x 2 chains
    assert not list(tmp_path.glob(".rows-*.shard*")), list(tmp_path.iterdir())


def test_cpu_template_as_shipped(slurm, tmp_path):
    """jobs/cpu_nodes.sbatch unchanged; resources and arguments on the sbatch command line."""
    shutil.copy(EIGHT_SCHOOLS, tmp_path / "model.py")
    code, job, name = submit(
        slurm,
        tmp_path,
        ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=00:05:00",
         str(JOBS / "cpu_nodes.sbatch"), "model.py", *SMALL, "--seed", "4"],
    )  # fmt: skip
    assert code == 0, logs(tmp_path)
    idata = check_result(tmp_path / f"{name}-{job}.h5", chains=4, draws=50)  # 2 ranks x 2
    assert list(idata.posterior.school.values)[0] == "Choate"


def test_array_sweep_over_seeds(slurm, tmp_path):
    script = render(
        tmp_path,
        [str(EIGHT_SCHOOLS), "--template", "array_sweep", "--array", "0-1", "--cpu",
         "--ranks-per-node", "1", "--cpus-per-rank", "1", "--time", "00:05:00", *SMALL,
         "--seed", "100", "--out", "sweep-%a.h5"],
    )  # fmt: skip
    code, job, name = submit(slurm, tmp_path, [str(script)])
    assert code == 0, logs(tmp_path)
    seeds = []
    for task in (0, 1):
        assert (tmp_path / f"{name}-{job}_{task}.out").exists(), logs(tmp_path)
        check_result(tmp_path / f"sweep-{task}.h5", chains=4, draws=50)
        with h5py.File(tmp_path / f"sweep-{task}.h5") as f:
            seeds.append(int(f.attrs["root_seed"]))
    assert seeds == [100, 101]


def test_walltime_resume_spans_allocations(slurm, tmp_path):
    """Signal before the time limit -> checkpoint, exit 3 -> requeue -> --resume -> complete.

    SLURM checks time limits every 30 s, so with --time 2 min and the signal @60 s the warning
    comes 30-60 s into each allocation. The run needs about 90 s of sampling on a quiet 2-core
    machine (12,000 draws of 4 chains), so the first allocation always stops early, and the job
    finishes in the second or a later one.
    """
    run_help = subprocess.run(
        [sys.executable, "-m", "mpi_pymc", "run", "--help"],
        env=slurm["env"], capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    if "--resume" not in run_help:
        pytest.skip("`run --resume` has not landed yet")
    draws = 12000
    script = render(
        tmp_path,
        [str(EXAMPLES / "logistic_regression.py"), "--template", "walltime_resume", "--cpu",
         "--ranks-per-node", "2", "--cpus-per-rank", "1", "--time", "00:02:00",
         "--signal-before", "60", "--draws", str(draws), "--tune", "100", "--chunk-draws", "50",
         "--chains-per-rank", "2", "--seed", "5"],
    )  # fmt: skip
    code, job, name = submit(
        slurm, tmp_path, [str(script)], timeout=900, extra_env={"MPI_PYMC_N": "30000"}
    )
    log = (tmp_path / f"{name}-{job}.out").read_text()
    assert code == 0, log
    allocations = re.findall(r"\(allocation (\d+)\)", log)
    assert len(allocations) >= 2, f"the first allocation finished before the warning:\n{log}"
    assert "walltime warning: asking every rank to checkpoint" in log
    assert "checkpoint written; requeueing" in log
    assert f"out {name}-{job}.h5 --resume" in log
    assert "done after" in log
    check_result(tmp_path / f"{name}-{job}.h5", chains=4, draws=draws)


def _in_job_env(monkeypatch, slurm: dict) -> None:
    """submit() passes this process's environment to sbatch, as a user's shell would."""
    for name, value in slurm["env"].items():
        monkeypatch.setenv(name, value)


def test_submit_from_python_runs_to_a_result(tmp_path, slurm, monkeypatch):
    import pymc as pm

    import mpi_pymc

    _in_job_env(monkeypatch, slurm)
    monkeypatch.chdir(tmp_path)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 10)
        pm.Normal("y", mu, 1, observed=np.array([0.3, -0.2, 1.1]))
    job = mpi_pymc.submit(
        model, time="00:10:00", ranks_per_node=2, cpus_per_rank=1,
        partition=slurm["partition"], draws=50, tune=50, random_seed=4, out="fit.h5",
    )  # fmt: skip
    assert job.job_id.isdigit() and job.script.exists()
    assert "mpi_pymc run" in job.script.read_text()
    idata = job.result(timeout=300)
    assert job.state() in ("COMPLETED", "UNKNOWN")
    assert dict(idata.posterior.sizes)["draw"] == 50 and int(idata.attrs["ranks"]) == 2
    assert "sampling" in job.log() and idata.attrs["root_seed"] == "4"


def test_submit_then_cancel_ends_the_job(tmp_path, slurm, monkeypatch):
    import mpi_pymc

    _in_job_env(monkeypatch, slurm)
    monkeypatch.chdir(tmp_path)
    job = mpi_pymc.submit(
        str(EIGHT_SCHOOLS), time="00:10:00", ranks_per_node=1, cpus_per_rank=1,
        partition=slurm["partition"], draws=1_000_000, tune=50, out="long.h5",
    )  # fmt: skip
    job.cancel()
    assert job.wait(timeout=120) in ("CANCELLED", "UNKNOWN")
    with pytest.raises(mpi_pymc.RankFailure, match=f"job {job.job_id} ended"):
        job.result(timeout=10)
