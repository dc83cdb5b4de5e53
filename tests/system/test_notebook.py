"""The example notebook, executed by a real Jupyter kernel (nbclient): launch and submit."""

from __future__ import annotations

import os
import shutil
import subprocess

import h5py
import nbformat
import numpy as np
from helpers import EIGHT_SCHOOLS, EXAMPLES, env, run_ranks
from nbclient import NotebookClient

NOTEBOOK = EXAMPLES / "api_notebook.ipynb"
# The notebook's settings; the CLI reference below repeats them.
SETTINGS = ["--draws", "500", "--tune", "500", "--chains", "4", "--seed", "2026"]


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=10)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _posterior(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {k: v[()] for k, v in f["posterior"].items() if v.ndim >= 2}


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_the_example_notebook_samples_like_the_cli(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute(env=env())  # a real kernel; raises CellExecutionError if a cell fails
    launched = _posterior(tmp_path / "eight_schools_notebook.h5")
    proc = run_ranks(
        2, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(tmp_path / "cli.h5")], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    reference = _posterior(tmp_path / "cli.h5")
    assert set(launched) == set(reference)
    for name, values in reference.items():
        np.testing.assert_array_equal(launched[name], values, err_msg=name)
    submitted = _text(notebook.cells[-1])
    if _slurm_answers():
        assert "COMPLETED" in submitted or "UNKNOWN" in submitted, submitted
        job = _posterior(tmp_path / "eight_schools_job.h5")
        for name, values in reference.items():
            np.testing.assert_array_equal(job[name], values, err_msg=name)
    else:
        assert submitted.startswith("not submitted:"), submitted
    assert not os.path.exists(tmp_path / "eight_schools_notebook.h5.launch")
