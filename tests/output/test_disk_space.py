"""Disk space: the size the output will take, the preflight on a small file system, and a disk
that fills up mid-run (real tmpfs mounts; skipped where mounting is not permitted)."""

from __future__ import annotations

import contextlib
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

from mpi_pymc.core.errors import os_error_cause
from mpi_pymc.output import disk_space, storage
from mpi_pymc.output.checkpoint import checkpoint_path, read_checkpoint
from mpi_pymc.output.layout import Layout, Variable, output_bytes, shard_dir

MPIO = bool(h5py.get_config().mpi)

# --- pure parts -------------------------------------------------------------------------------


def _layout(draws=1000, chunk_draws=25, chains=4) -> Layout:
    posterior = [Variable("mu", (), (), "float64"), Variable("theta", ("school",), (8,), "float64")]
    stats = [Variable("lp", (), (), "float64"), Variable("diverging", (), (), "bool")]
    return Layout(chains, draws, chunk_draws, {"school": np.array(list("abcdefgh"))},
                  {"posterior": posterior, "sample_stats": stats})  # fmt: skip


def test_refusal_gives_both_figures_and_the_fix():
    assert disk_space.shortfall("o.h5", 900, 100, 1000, "/scratch") is None
    line = disk_space.shortfall("o.h5", 3 * 2**30, 2**20, int(1.1 * 2**30), "/scratch")
    assert line == (
        "output 'o.h5' needs 3.0 GiB (draws 3.0 GiB, checkpoint 1.0 MiB) but /scratch has 1.1 GiB "
        "free: free space, choose another --out, or lower --draws"
    )
    # The latest and the previous checkpoint stay while a new one is written beside them.
    assert disk_space.checkpoint_bytes(1000, 2) == 3 * disk_space.checkpoint_bytes(1000, 2, True)
    one_part = disk_space.checkpoint_bytes(1000, 2, True)
    assert disk_space.checkpoint_bytes(1000, 2, True, parts=4) > one_part


def test_size_grows_with_the_draws_and_a_resume_adds_only_new_shards():
    small, large = _layout(draws=100), _layout(draws=10_000)
    draws = 10_000 * 4 * (10 * 8 + 1)  # chains x (ten float64 values and a bool) per draw
    assert output_bytes(large, "mpio", 2) > draws
    assert output_bytes(small, "mpio", 2) < output_bytes(large, "mpio", 2)
    assert output_bytes(large, "mpio", 2, resume=True) == 0
    assert output_bytes(large, "shards", 2, resume=True) > draws


@pytest.mark.parametrize("io", ["shards", "mpio"])
def test_the_size_bounds_a_real_file(tmp_path, io):
    if io == "mpio" and not MPIO:
        pytest.skip("h5py is not MPI-enabled")
    from mpi4py import MPI

    layout, out = _layout(), str(tmp_path / "o.h5")
    writer = storage.open_writer(io, out, MPI.COMM_SELF, layout, range(4), {"settings": {}})
    writer.close()
    used = disk_space.disk_bytes([out, str(shard_dir(out))])
    assert used <= output_bytes(layout, io, 1) <= 2 * used + 512 * 1024


def test_causes_of_write_errors_are_short():
    assert os_error_cause(OSError(28, "No space left on device")) == "No space left on device"
    buried = OSError("Can't write data (file write failed: errno = 28, error message = 'No space "
                     "left on device', buf = 0x1)")  # fmt: skip
    assert os_error_cause(buried) == "No space left on device"


# --- real jobs on a small file system ---------------------------------------------------------

SETTINGS = ["--draws", "300", "--tune", "100", "--chains", "4", "--seed", "5",
            "--chunk-draws", "25", "--chain-method", "sequential"]  # fmt: skip


@contextlib.contextmanager
def _tmpfs(directory: Path, size: str):
    directory.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_a_too_small_file_system_is_refused_before_writing(tmp_path):
    with _tmpfs(tmp_path / "small", "600k") as small:
        out = small / "o.h5"
        args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--draws", "1000", "--out", str(out)]
        proc = run_ranks(2, args, cwd=tmp_path, timeout=180)
        assert proc.returncode == 2, proc.stderr
        (line,) = error_lines(proc.stderr)
        print(line)
        assert f"output '{out}' needs " in line and f"but {small} has " in line
        assert line.endswith("free: free space, choose another --out, or lower --draws")
        assert os.listdir(small) == []  # no output, no shards, no lock


def _fill(directory: Path) -> None:
    """Fill the file system to the last byte: in 64 KiB blocks, then smaller ones, so that no
    checkpoint part (a few KiB for eight schools) still fits in what a 64 KiB block left."""
    with open(directory / "filler", "wb", buffering=0) as handle:
        for size in (65536, 4096, 256, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)


def test_a_disk_filling_up_mid_run_ends_cleanly_and_resumes_to_the_same_draws(tmp_path):
    ref = tmp_path / "ref.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(ref)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "o.h5"
        args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out)]
        job = start_until_checkpoint(2, args, tmp_path, out, after_draws=50)
        pids = rank_pids(out)
        for pid in pids:  # the disk fills between two chunks, while the run cannot finish
            os.kill(pid, signal.SIGSTOP)
        _fill(disk)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        _, stderr = job.communicate(timeout=180)
        wait_ranks_gone(out)
        assert job.returncode == 2, stderr
        (line,) = error_lines(stderr)
        print(line)
        assert "No space left on device" in line and "continue with --resume" in line, line
        assert "Traceback" not in stderr
        kept = read_checkpoint(checkpoint_path(str(out))).draws_done
        assert 50 <= kept < 300
        kept_files = {"filler", "o.h5", "o.h5.ckpt", "o.h5.ckpt.prev", "o.h5.ckpt.d", "o.h5.parts"}
        left = set(os.listdir(disk)) - kept_files
        assert not left  # no torn checkpoint aside, no lock
        assert not [n for n in os.listdir(disk / "o.h5.ckpt.d") if ".tmp" in n]

        os.remove(disk / "filler")
        args = ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--out", str(out), "--resume"]
        proc = run_ranks(2, args, cwd=tmp_path, timeout=240)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as resumed, h5py.File(ref) as uninterrupted:
            for name in ("posterior/mu", "posterior/theta", "sample_stats/lp"):
                np.testing.assert_array_equal(resumed[name][()], uninterrupted[name][()], name)
