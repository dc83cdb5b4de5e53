"""A built package renders every job template: the templates are package data, not repo files.

The sdist and the wheel are built from a copy of the source (so the checkout gets no build/ or
egg-info), the wheel goes into a bare virtual environment (no pymc, jax or mpi4py: --no-deps),
and ``python -m mpi_pymc jobscript`` runs there from a folder outside the repository, so only
the installed package can supply the templates.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpi_pymc import jobscript

ROOT = Path(__file__).resolve().parents[2]
# What each template needs on the command line besides the model, --time and run options.
TEMPLATE_ARGS = {
    "single_node_gpus": ["--gpus-per-node", "2"],
    "multi_node_gpus": ["--nodes", "2", "--gpus-per-node", "4"],
    "cpu_nodes": ["--cpu"],
    "walltime_resume": ["--gpus-per-node", "1", "--signal-before", "300"],
    "array_sweep": ["--cpu", "--array", "0-3", "--out", "fit-%a.h5"],
    "data_shards": ["--nodes", "2", "--gpus-per-node", "4", "--data-shards", "4"],
}
RUN_LINE = re.compile(r'^\s*"\$PYTHON" -m mpi_pymc run "\$MODEL" ', flags=re.MULTILINE)


def _run(
    cmd: list[str], cwd: Path, timeout: float, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory) -> Path:
    """The python of a fresh venv holding only the mpi_pymc wheel built from this checkout."""
    checks = ("import setuptools.command.bdist_wheel", "import wheel.bdist_wheel")
    if not any(
        subprocess.run([sys.executable, "-c", c], capture_output=True, timeout=60).returncode == 0
        for c in checks
    ):
        pytest.skip("cannot build wheels here: needs setuptools>=70.1 (the test extra) or wheel")
    tmp = tmp_path_factory.mktemp("packaging")
    source, dist = tmp / "source", tmp / "dist"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "mpi_pymc", source / "mpi_pymc", ignore=shutil.ignore_patterns("__pycache__")
    )
    # sdist first, then the wheel from it, as `python -m build` does: both must carry the data.
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    sdist = dist / _run([sys.executable, "-c", code], cwd=source, timeout=120).stdout.split()[-1]
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(dist), str(sdist)],
        cwd=tmp,
        timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("mpi_pymc-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, timeout=120)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        cwd=tmp,
        timeout=300,
    )  # fmt: skip
    return python


def test_every_template_is_in_the_wheel_and_renders(installed_python, tmp_path):
    assert set(TEMPLATE_ARGS) == set(jobscript.TEMPLATES), "add the new template to TEMPLATE_ARGS"
    work = tmp_path / "elsewhere"  # not the repository: its mpi_pymc/ must not be importable
    # Nor through the test run's PYTHONPATH; no MPI_PYMC_JOBS_DIR either.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MPI_PYMC_"))}
    work.mkdir()
    (work / "model.py").write_text("")
    where = _run(
        [str(installed_python), "-c",
         "import importlib.util as u, mpi_pymc; print(mpi_pymc.__file__); "
         "print([m for m in ('mpi4py', 'jax', 'pymc') if u.find_spec(m)])"],
        cwd=work,
        timeout=60,
        env=env,
    ).stdout.splitlines()  # fmt: skip
    assert Path(where[0]).is_relative_to(installed_python.parent.parent), where
    assert where[1] == "[]", f"the venv should hold only the wheel, found {where[1]}"
    help_text = _run(
        [str(installed_python), "-m", "mpi_pymc", "jobscript", "--help"], work, 60, env
    ).stdout
    assert "--template" in help_text

    for name, extra in TEMPLATE_ARGS.items():
        argv = ["model.py", "--template", name, "--time", "01:00:00", "--draws", "50", *extra]
        script = _run(
            [str(installed_python), "-m", "mpi_pymc", "jobscript", *argv], work, 60, env
        ).stdout
        assert f"from {name}.sbatch" in script.splitlines()[1], script[:300]
        assert RUN_LINE.search(script), f"{name}: no run line\n{script}"
        assert re.search(r"^MODELS?=\(?\"?model\.py", script, flags=re.MULTILINE), name
        assert re.search(r"^RUN_OPTIONS=\(--draws 50[ )]", script, flags=re.MULTILINE), name
