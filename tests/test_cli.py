"""The CLI's front door as a newcomer meets it: ``make run``'s command (smaller), on the installed
stack. One run checks what reaches the terminal."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import EIGHT_SCHOOLS, env, mpirun_or_skip

from mpi_pymc.driver.progress import COMPILING, LOADING, SAMPLING, STARTING, WARMING_UP


@pytest.fixture(scope="module")
def make_run(tmp_path_factory) -> subprocess.CompletedProcess:
    mpirun_or_skip()
    tmp = tmp_path_factory.mktemp("make_run")
    environment = env()
    # ArviZ 0.x shows its refactor notice once a day per user cache: a fresh cache shows it.
    environment["XDG_CACHE_HOME"] = str(tmp / "cache")
    cmd = [sys.executable, "-m", "mpi_pymc.launch", "-n", "2", "-m", "mpi_pymc", "run",
           str(EIGHT_SCHOOLS), "--tune", "50", "--draws", "50", "--out", str(tmp / "out.h5"),
           "--overwrite", "--progress", "--seed", "20261127"]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=tmp, env=environment, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} hung:\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_make_run_prints_no_python_warning(make_run):
    warned = [line for line in make_run.stderr.splitlines() if re.search(r"\w+Warning:", line)]
    assert not warned, make_run.stderr


def test_progress_names_the_start_up_phases_in_order(make_run):
    # What each redraw of the progress line shows first: a phase's name, or the bar's label
    # (text mode reads the redraws' carriage returns as line ends).
    shown = [
        re.sub(r"\s+(\d+\.\ds|\[.*)$", "", part.strip()) for part in make_run.stderr.splitlines()
    ]
    firsts = [shown.index(name) for name in (STARTING, LOADING, COMPILING, WARMING_UP)]
    assert firsts == sorted(firsts), shown
    assert any(part.startswith(SAMPLING) for part in shown), shown
    # Each phase line carries the run's elapsed time.
    assert re.search(rf"^{COMPILING} +\d+\.\ds$", make_run.stderr, re.M), make_run.stderr


def test_the_cli_keeps_its_table_and_closing_line(make_run):
    lines = make_run.stdout.splitlines()
    assert lines[0].startswith("mpi_pymc ") and str(EIGHT_SCHOOLS.name) in lines[0]
    assert any(line.startswith("parameter ") for line in lines)
    assert any("divergences. Wrote 4 chains x 50 draws" in line for line in lines)


def test_a_short_run_says_its_draws_are_not_yet_trustworthy(make_run):
    # 4 chains x 50 draws: fewer than the 100 effective draws per chain the report asks of every
    # parameter (issue #37: hard geometry, or too short a run, is reported, not hidden;
    # benchmarks/hard_geometry.py checks longer runs of harder posteriors).
    warned = [line for line in make_run.stdout.splitlines() if line.startswith("warning: ")]
    assert any(re.search(r"(Bulk|Tail) ESS is below 400 ", line) for line in warned), warned
