"""mpi_pymc.core.slurm: the job's end time and squeue, with and without SLURM."""

from __future__ import annotations

from mpi_pymc.core import slurm


def test_slurm_end_time_from_the_environment():
    assert slurm.slurm_end_time({}) is None
    assert slurm.slurm_end_time({"SLURM_JOB_END_TIME": "1800000000"}) == 1800000000.0


def test_no_job_no_end_time():
    assert slurm.slurm_end_time({"SLURM_JOB_ID": "not-a-number"}) is None


def test_squeue_of_an_unknown_job_is_no_answer_or_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue on PATH: None, never an exception
    assert slurm.squeue("12345", "%T") is None
