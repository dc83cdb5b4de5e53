"""``jobscript`` rendering and the job templates' shell logic, without SLURM.

The templates are run by bash with stand-ins for ``srun`` and ``scontrol`` on PATH, so the
command line a job would launch, and the walltime template's signal/requeue logic, are checked
on any machine. tests/system/test_slurm_jobs.py submits them to a real SLURM.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from helpers import EIGHT_SCHOOLS, ROOT

from mpi_pymc import jobscript

JOBS = ROOT / "jobs"
ALL_TEMPLATES = sorted(p.stem for p in JOBS.glob("*.sbatch"))


def _parser() -> argparse.ArgumentParser:
    """A stand-in for the real CLI: only the jobscript subcommand."""
    parser = argparse.ArgumentParser(prog="python -m mpi_pymc")
    jobscript.add_parser(parser.add_subparsers(dest="command"))
    return parser


def render(argv: list[str], capsys) -> tuple[int, str, str]:
    args = _parser().parse_args(["jobscript", *argv])
    code = jobscript.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sbatch_options(script: str) -> dict[str, str]:
    """Active ``#SBATCH --name=value`` options (``##SBATCH`` lines are switched off)."""
    found = {}
    for line in script.splitlines():
        match = re.match(r"^#SBATCH\s+--([\w-]+)(?:=(\S*))?", line)
        if match:
            found[match[1]] = match[2] or ""
    return found


def bash_array(script: str, name: str) -> list[str]:
    match = re.search(rf"^{name}=\((.*)\)$", script, flags=re.MULTILINE)
    assert match, f"no {name}=(...) line"
    return shlex.split(match[1])


# ---------------------------------------------------------------------------------------------
# The templates as shipped


def test_the_seven_templates_exist():
    assert ALL_TEMPLATES == sorted(
        ["single_node_gpus", "multi_node_gpus", "cpu_nodes", "walltime_resume", "array_sweep",
         "data_shards", "scaling_benchmark"]
    )  # fmt: skip
    assert set(jobscript.TEMPLATES) == set(ALL_TEMPLATES) - {"scaling_benchmark"}


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_template_has_what_a_centre_expects(name):
    text = (JOBS / f"{name}.sbatch").read_text()
    subprocess.run(["bash", "-n", str(JOBS / f"{name}.sbatch")], check=True)
    options = sbatch_options(text)
    for option in ("job-name", "account", "partition", "time", "nodes", "ntasks-per-node",
                   "cpus-per-task", "output"):  # fmt: skip
        assert option in options, f"{name}: no #SBATCH --{option}"
    assert options["output"] in ("%x-%j.out", "%x-%A_%a.out")
    if name != "cpu_nodes":
        assert "gpus-per-node" in options or "gpus-per-task" in options
    else:
        assert not {"gpus-per-node", "gpus-per-task"} & set(options)
    assert re.search(r"^srun --mpi=", text, flags=re.MULTILINE) or "--launcher srun" in text
    assert "pmix" in text
    assert "# module load" in text
    assert 'PYTHON="${MPI_PYMC_PYTHON:-python}"' in text
    assert "OMPI_ALLOW_RUN_AS_ROOT=1" in text
    if name != "scaling_benchmark":
        assert re.search(r"^# mpirun -n", text, flags=re.MULTILINE), "no mpirun alternative"
    # No site paths: everything machine-specific comes from variables the user sets.
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            assert not re.search(r"(^|[\s\"'=])/(home|opt|work|scratch|apps|sw|usr)/", line), line
    # #SBATCH lines must all come before the first command, or sbatch ignores them.
    lines = text.splitlines()
    first_command = next(
        i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#")
    )
    assert all(not line.startswith("#SBATCH") for line in lines[first_command:])


def test_walltime_template_traps_and_requeues():
    text = (JOBS / "walltime_resume.sbatch").read_text()
    options = sbatch_options(text)
    assert re.fullmatch(r"B:USR1@\d+", options["signal"])
    assert "requeue" in options and options["open-mode"] == "append"
    assert "trap forward_checkpoint_signal USR1" in text
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "--kill-on-bad-exit=1" in text


def test_multi_node_kills_on_bad_exit():
    assert (
        'srun --mpi="$SRUN_MPI" --kill-on-bad-exit=1'
        in (JOBS / "multi_node_gpus.sbatch").read_text()
    )


def test_benchmark_template_is_a_placeholder_for_bench():
    text = (JOBS / "scaling_benchmark.sbatch").read_text()
    assert "-m mpi_pymc bench" in text and "PLACEHOLDER" in text


# ---------------------------------------------------------------------------------------------
# Pure helpers


@pytest.mark.parametrize(
    "text, seconds",
    [("00:00:30", 30), ("02:00:00", 7200), ("1-00:00:00", 86400), ("2-12:30:05", 217805)],
)
def test_parse_walltime(text, seconds):
    assert jobscript.parse_walltime(text) == seconds


@pytest.mark.parametrize("text", ["90", "1:00", "00:60:00", "00:00:00", "1-24:00:00", "1h", ""])
def test_parse_walltime_rejects(text):
    with pytest.raises(jobscript.UserError, match="--time"):
        jobscript.parse_walltime(text)


@pytest.mark.parametrize(
    "spec, largest", [("0-3", 3), ("1,4,7", 7), ("0-99%10", 99), ("0-10:2,15", 15), ("5", 5)]
)
def test_array_indices_max(spec, largest):
    assert jobscript.array_indices_max(spec) == largest


@pytest.mark.parametrize("spec", ["0-x", "", "-1", "0-3%", "a"])
def test_array_spec_rejects(spec):
    with pytest.raises(jobscript.UserError, match="--array"):
        jobscript.array_indices_max(spec)


def test_out_patterns_become_slurm_variables_and_stay_quoted():
    assert (
        jobscript.out_pattern_to_shell("fit-%x-%j.h5") == "fit-${SLURM_JOB_NAME}-${SLURM_JOB_ID}.h5"
    )
    assert jobscript.out_pattern_to_shell("s-%A_%a.h5") == (
        "s-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.h5"
    )
    assert jobscript.out_pattern_to_shell('100%% "$HOME".h5') == '100% \\"\\$HOME\\".h5'
    with pytest.raises(jobscript.UserError, match="%q"):
        jobscript.out_pattern_to_shell("a%q.h5")


def test_run_options_round_trip_and_merge():
    given = jobscript.parse_run_options(
        ["--draws", "50", "--no-progress", "--overwrite", "--target-accept", "0.9"]
    )
    assert given == {"draws": 50, "progress": False, "overwrite": True, "target_accept": 0.9}
    words = jobscript.run_option_words(given)
    assert words == ["--draws", "50", "--target-accept", "0.9", "--overwrite", "--no-progress"]
    template = {"draws": 1000, "chains_per_rank": 4}
    merged = jobscript.merge_run_options(template, {"chains": 16})
    assert merged == {"draws": 1000, "chains": 16}


# ---------------------------------------------------------------------------------------------
# Rendering through the command line


def test_gpu_defaults_fill_the_sbatch_lines(capsys):
    code, out, err = render(
        [str(EIGHT_SCHOOLS), "--gpus-per-node", "4", "--time", "02:00:00", "--account", "p1",
         "--partition", "gpu", "--draws", "2000", "--chains", "16"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    options = sbatch_options(out)
    assert options["job-name"] == "eight_schools"
    assert options["account"] == "p1" and options["partition"] == "gpu"
    assert options["time"] == "02:00:00" and options["nodes"] == "1"
    assert options["ntasks-per-node"] == "4" and options["gpus-per-node"] == "4"
    assert bash_array(out, "RUN_OPTIONS") == ["--draws", "2000", "--tune", "1000", "--chains", "16"]
    assert f'MODEL="{EIGHT_SCHOOLS}"' in out
    assert "single_node_gpus.sbatch" in out.splitlines()[1]


def test_template_is_chosen_from_the_options(capsys):
    cases = {
        ("--gpus-per-node", "4", "--nodes", "2"): "multi_node_gpus",
        ("--cpu",): "cpu_nodes",
        ("--gpus-per-node", "1", "--signal-before", "300"): "walltime_resume",
        ("--cpu", "--array", "0-3", "--out", "f-%a.h5"): "array_sweep",
        ("--gpus-per-node", "4", "--nodes", "2", "--data-shards", "4"): "data_shards",
        ("--gpus-per-node", "4", "--data-shards", "1"): "single_node_gpus",
        ("--cpu", "--ranks-per-node", "4", "--data-shards", "2"): "cpu_nodes",
    }
    for extra, name in cases.items():
        code, out, err = render([str(EIGHT_SCHOOLS), "--time", "01:00:00", *extra], capsys)
        assert code == 0, err
        assert f"{name}.sbatch" in out.splitlines()[1]


def test_data_shards_rendering_keeps_the_layout_on_the_sbatch_lines(capsys):
    code, out, err = render(
        [str(EIGHT_SCHOOLS), "--time", "02:00:00", "--nodes", "4", "--gpus-per-node", "4",
         "--data-shards", "4", "--chains-per-rank", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    options = sbatch_options(out)
    assert (options["nodes"], options["ntasks-per-node"], options["gpus-per-node"]) == (
        "4", "4", "4"
    )  # fmt: skip
    words = bash_array(out, "RUN_OPTIONS")
    assert words[words.index("--data-shards") + 1] == "4" and words.count("--data-shards") == 1
    assert words[words.index("--chains-per-rank") + 1] == "2"
    # Two GPUs per rank: the rank's own devices hold the shards.
    code, out, err = render(
        [str(EIGHT_SCHOOLS), "--time", "02:00:00", "--gpus-per-node", "4", "--gpus-per-rank", "2",
         "--data-shards", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert sbatch_options(out)["ntasks-per-node"] == "2"


def test_cpu_rendering_asks_for_no_gpus(capsys):
    code, out, err = render(
        [str(EIGHT_SCHOOLS), "--template", "single_node_gpus", "--cpu", "--ranks-per-node", "2",
         "--cpus-per-rank", "1", "--time", "00:05:00", "--draws", "50"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    options = sbatch_options(out)
    assert not {"gpus-per-node", "gpus-per-task"} & set(options)
    assert "GPU" not in "".join(line for line in out.splitlines() if line.startswith("#SBATCH"))
    assert options["ntasks-per-node"] == "2" and options["cpus-per-task"] == "1"
    assert bash_array(out, "RUN_OPTIONS")[-2:] == ["--gpus-per-rank", "0"]
    # Not given: switched off, so the site's default account and partition apply.
    assert "##SBATCH --account=" in out and "##SBATCH --partition=" in out


def test_walltime_rendering(capsys):
    code, out, err = render(
        [str(EIGHT_SCHOOLS), "--gpus-per-node", "4", "--nodes", "8", "--time", "12:00:00",
         "--signal-before", "900", "--draws", "100000", "--out", "long-%x.h5"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    options = sbatch_options(out)
    assert options["signal"] == "B:USR1@900" and options["nodes"] == "8"
    assert 'OUT="long-${SLURM_JOB_NAME}.h5"' in out
    assert "--draws" in bash_array(out, "RUN_OPTIONS")


def test_array_rendering_over_models(capsys, tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("")
    b.write_text("")
    code, out, err = render(
        [str(a), f"{b}:wide", "--cpu", "--time", "01:00:00", "--seed", "7", "--out", "r-%a.h5"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert sbatch_options(out)["array"] == "0-1"
    assert bash_array(out, "MODELS") == [str(a), f"{b}:wide"]
    assert "BASE_SEED=7" in out
    assert "--seed" not in bash_array(out, "RUN_OPTIONS")
    assert 'OUT="r-${SLURM_ARRAY_TASK_ID}.h5"' in out


def test_job_file_is_written_once(capsys, tmp_path):
    target = tmp_path / "fit.sbatch"
    argv = [str(EIGHT_SCHOOLS), "--cpu", "--time", "00:10:00", "-o", str(target)]
    code, out, err = render(argv, capsys)
    assert code == 0 and out == ""
    assert f"sbatch {target}" in err
    assert target.stat().st_mode & stat.S_IXUSR
    code, _, err = render(argv, capsys)
    assert code == 2 and "--force" in err
    assert render([*argv, "--force"], capsys)[0] == 0


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--time", "2h", "--cpu"], "--time '2h' is not HH:MM:SS"),
        (["--time", "01:00:00"], "--gpus-per-node G"),
        (["--time", "01:00:00", "--cpu", "--gpus-per-node", "2"], "drop one"),
        (["--time", "01:00:00", "--gpus-per-node", "3", "--gpus-per-rank", "2"], "multiple"),
        (["--time", "01:00:00", "--gpus-per-node", "4", "--ranks-per-node", "2"], "make 4"),
        (
            [
                "--time",
                "01:00:00",
                "--gpus-per-node",
                "4",
                "--nodes",
                "2",
                "--template",
                "single_node_gpus",
            ],
            "multi_node_gpus",
        ),  # fmt: skip
        (["--time", "01:00:00", "--cpu", "--template", "nope"], "unknown --template 'nope'"),
        (["--time", "00:05:00", "--cpu", "--signal-before", "300"], "not shorter"),
        (["--time", "01:00:00", "--cpu", "--array", "0-3", "--out", "x.h5"], "%a"),
        (
            ["--time", "01:00:00", "--cpu", "--template", "cpu_nodes", "--array", "0-1"],
            "array_sweep",
        ),  # fmt: skip
        (
            ["--time", "01:00:00", "--cpu", "--template", "walltime_resume", "--overwrite"],
            "--resume itself",
        ),  # fmt: skip
        (["--time", "01:00:00", "--cpu", "--job-name", "my job"], "--job-name"),
        (["--time", "01:00:00", "--cpu", "--out", "a%q.h5"], "%q"),
        # Data shards that the run would refuse only after the job waited in the queue.
        (
            ["--time", "01:00:00", "--nodes", "2", "--gpus-per-node", "4", "--data-shards", "3"],
            "--data-shards 3 does not divide the 8 ranks (2 node(s) x 4)",
        ),  # fmt: skip
        (
            [
                "--time",
                "01:00:00",
                "--gpus-per-node",
                "4",
                "--gpus-per-rank",
                "2",
                "--data-shards",
                "4",
            ],
            "so pass --data-shards 2",
        ),  # fmt: skip
        (
            ["--time", "01:00:00", "--cpu", "--ranks-per-node", "3", "--data-shards", "2"],
            "--data-shards 2 does not divide the 3 ranks",
        ),  # fmt: skip
    ],
)
def test_mistakes_give_one_line(argv, needle, capsys):
    code, out, err = render([str(EIGHT_SCHOOLS), *argv], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mpi_pymc: error: ") and needle in err


def test_missing_model_is_one_line(capsys, tmp_path):
    code, _, err = render([str(tmp_path / "nope.py"), "--cpu", "--time", "01:00:00"], capsys)
    assert code == 2 and "does not exist" in err


# ---------------------------------------------------------------------------------------------
# The job scripts' own logic, with stand-ins for srun and scontrol

FAKE_SRUN = """#!/bin/bash
# Records its arguments; with FAKE_SRUN_WAIT=N, runs N/20 s or until SIGUSR1, then exits 3
# (a checkpoint).
printf '%s\\n' "$@" > "$FAKE_LOG/srun.args"
if [ -n "${FAKE_SRUN_WAIT:-}" ]; then
    trap 'echo got-usr1 >> "$FAKE_LOG/srun.signals"; exit 3' USR1
    touch "$FAKE_LOG/srun.ready"
    for _ in $(seq "$FAKE_SRUN_WAIT"); do sleep 0.05; done
    exit 0
fi
exit "${FAKE_SRUN_EXIT:-0}"
"""
FAKE_SCONTROL = """#!/bin/bash
printf '%s\\n' "$*" >> "$FAKE_LOG/scontrol.calls"
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        FAKE_LOG=str(tmp_path),
        MPI_PYMC_PYTHON="bash",  # any program on PATH: srun is a stand-in
        SLURM_JOB_ID="77",
        SLURM_JOB_NAME="job",
        SLURM_JOB_NODELIST="node1",
        SLURM_NTASKS="2",
        SLURM_CPUS_PER_TASK="3",
    )
    return tmp_path, env


def _srun_args(tmp_path: Path) -> list[str]:
    return (tmp_path / "srun.args").read_text().splitlines()


def test_script_arguments_override_model_and_options(fake_slurm):
    tmp_path, env = fake_slurm
    proc = subprocess.run(
        ["bash", str(JOBS / "cpu_nodes.sbatch"), "my model.py", "--draws", "50", "--out", "x.h5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    args = _srun_args(tmp_path)
    assert args[:3] == ["--mpi=pmix", "--kill-on-bad-exit=1", "--cpus-per-task=3"]
    assert args[3:] == ["bash", "-m", "mpi_pymc", "run", "my model.py", "--out", "x.h5",
                        "--draws", "1000", "--tune", "1000", "--chains-per-rank", "2",
                        "--gpus-per-rank", "0", "--draws", "50"]  # fmt: skip
    assert "done: x.h5" in proc.stdout


def test_srun_failure_fails_the_job(fake_slurm):
    tmp_path, env = fake_slurm
    env["FAKE_SRUN_EXIT"] = "1"
    proc = subprocess.run(
        ["bash", str(JOBS / "single_node_gpus.sbatch")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1 and "done:" not in proc.stdout


def test_array_task_picks_its_seed_and_file(fake_slurm):
    tmp_path, env = fake_slurm
    env.update(SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_JOB_ID="70")
    proc = subprocess.run(
        ["bash", str(JOBS / "array_sweep.sbatch"), "m.py", "--seed", "100"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = _srun_args(tmp_path)
    assert args[args.index("--seed") + 1] == "103"
    assert args[args.index("--out") + 1] == "job-70_3.h5"
    proc = subprocess.run(
        ["bash", str(JOBS / "array_sweep.sbatch"), "a.py", "b.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and "--array=0-1" in proc.stdout


def _walltime_job(tmp_path: Path, env: dict, out_exists: bool, steps=400) -> subprocess.Popen:
    if out_exists:
        (tmp_path / "job-77.h5").write_text("")
    env = {**env, "FAKE_SRUN_WAIT": str(steps)}
    proc = subprocess.Popen(
        ["bash", str(JOBS / "walltime_resume.sbatch"), "m.py"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not (tmp_path / "srun.ready").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc


def test_walltime_warning_checkpoints_and_requeues(fake_slurm):
    tmp_path, env = fake_slurm
    proc = _walltime_job(tmp_path, env, out_exists=False)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@N does
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 3, output
    assert (tmp_path / "srun.signals").read_text() == "got-usr1\n"
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"
    assert "--resume" not in _srun_args(tmp_path)
    assert "walltime warning" in output


def test_walltime_requeued_run_resumes(fake_slurm):
    tmp_path, env = fake_slurm
    env["SLURM_RESTART_COUNT"] = "1"
    proc = _walltime_job(tmp_path, env, out_exists=True, steps=2)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    args = _srun_args(tmp_path)
    assert args[args.index("--out") + 1 : args.index("--out") + 3] == ["job-77.h5", "--resume"]
    assert not (tmp_path / "scontrol.calls").exists()
    assert "allocation 2" in output


def test_walltime_gives_up_after_max_restarts(fake_slurm):
    tmp_path, env = fake_slurm
    env["SLURM_RESTART_COUNT"] = "20"
    proc = _walltime_job(tmp_path, env, out_exists=True)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 3 and "giving up" in output
    assert not (tmp_path / "scontrol.calls").exists()
