"""packing: a shards output becomes one file that can be copied alone, crash-safely; a file whose
shards are gone is reported in one line instead of reading as NaN.

One real 2-rank run with the shards writer (and a log_likelihood pass, so groups added by
post-processing are covered) serves every test; each test works on its own copy of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import arviz as az
import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import EIGHT_SCHOOLS, env, error_lines, launch, mpirun_or_skip, run_ranks

from mpi_pymc.api import open_result
from mpi_pymc.output.packing import (
    CHUNK_BYTES,
    MissingShards,
    _chunks,
    check_shards,
    is_packed,
    missing_shards,
    pack,
    pack_main,
    pack_on_rank0,
    shard_files,
)

GROUPS = ("posterior", "sample_stats", "log_likelihood")
SETTINGS = ["--draws", "20", "--tune", "20", "--chains", "4", "--seed", "5", "--chunk-draws",
            "10", "--chain-method", "sequential"]  # fmt: skip


@pytest.fixture(scope="module")
def shards_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "fit.h5"
    proc = run_ranks(
        2,
        ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--io", "shards", "--log-likelihood", "--out",
         str(out), "--no-pack"],
        cwd=tmp,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def _copy(out: Path, directory: Path) -> Path:
    """The output and its shards in another folder, under the same names (the virtual datasets
    name their shards relative to the main file's folder)."""
    directory.mkdir(parents=True)
    shutil.copy(out, directory / out.name)
    shutil.copytree(str(out) + ".parts", str(directory / out.name) + ".parts")
    return directory / out.name


def _datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset's values, coordinates and constant data included."""
    found: dict[str, np.ndarray] = {}

    def read(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(read)
    return found


def _arviz_values(path: Path) -> dict[str, np.ndarray]:
    """Every draw group's values, read through ArviZ and closed again (ArviZ 1 reads lazily and
    would keep the file open, which makes pack keep the shards: a reader holds OUT)."""
    idata = az.from_netcdf(path)
    values = {
        f"{group}/{name}": np.asarray(idata[group][name].values)
        for group in GROUPS
        for name in idata[group].data_vars
    }
    close = getattr(idata, "close", None)
    if close is not None:
        close()
    return values


def _attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: str(v) for k, v in f.attrs.items()}


def _assert_same(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert found.keys() == expected.keys()
    for key, values in expected.items():
        assert found[key].dtype == values.dtype, key
        np.testing.assert_array_equal(found[key], values, err_msg=key)


HOLD_LOCK = (
    "import sys; from mpi_pymc.output import lock as output_lock\n"
    "lock = output_lock.acquire(sys.argv[1], 600); print('held', flush=True); sys.stdin.read()\n"
    "lock.release()\n"
)


def _pack_in_subprocess(out: Path, kill_at: str) -> subprocess.CompletedProcess:
    code = "import sys; from mpi_pymc.output.packing import pack; pack(sys.argv[1])"
    environment = {**env(), "MPI_PYMC_PACK_KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-c", code, str(out)], env=environment, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_a_completed_shards_run_is_one_file_that_copies_alone(shards_run, tmp_path):
    """The run packs by default: its last line says so, no OUT.parts/ is left, and OUT copied
    alone into another folder reads the same draws as the unpacked run of the same seed."""
    out = tmp_path / "fit.h5"
    proc = run_ranks(2, ["run", str(EIGHT_SCHOOLS), *SETTINGS, "--io", "shards", "--out",
                         str(out)], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "can be copied alone" in proc.stdout.strip().splitlines()[-1]
    assert is_packed(out) and not Path(str(out) + ".parts").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copied = Path(shutil.copy(out, elsewhere / "renamed.h5"))
    idata, reference = az.from_netcdf(copied), az.from_netcdf(shards_run)
    for group in ("posterior", "sample_stats"):
        for name in reference[group].data_vars:
            np.testing.assert_array_equal(idata[group][name].values,
                                          reference[group][name].values, err_msg=name)  # fmt: skip


def test_a_packed_output_copied_alone_opens_in_arviz_with_the_same_draws(shards_run, tmp_path):
    out = _copy(shards_run, tmp_path / "run")
    parts = Path(str(out) + ".parts")
    assert not is_packed(out)
    assert shard_files(out) == sorted(
        parts / folder / f"rank{rank:05d}.h5" for folder in ("post-000", "s000") for rank in (0, 1)
    )
    # Attributes a user or a tool added to a draw variable survive packing, types included.
    with h5py.File(out, "r+") as f:
        f["posterior"]["mu"].attrs["units"] = "points"
        f["posterior"]["mu"].attrs["bounds"] = np.array([-50.0, 50.0])
    datasets, draws, root = _datasets(out), _arviz_values(out), _attrs(out)
    assert np.isfinite(draws["posterior/mu"]).all()

    result = pack(out)

    assert result.state == "packed"
    assert (result.datasets, result.shard_files) == (4 + 7 + 1, 4)
    assert result.data_bytes == sum(v.nbytes for v in draws.values())
    assert result.seconds > 0 and "can be copied alone" in result.line()
    assert is_packed(out) and not parts.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit.h5"]  # no copy left behind

    alone = tmp_path / "elsewhere" / "renamed.h5"
    alone.parent.mkdir()
    shutil.copy(out, alone)
    assert missing_shards(alone) == [] and shard_files(alone) == []
    check_shards(alone)
    _assert_same(_arviz_values(alone), draws)
    _assert_same(_datasets(alone), datasets)  # coordinates, constant data, draws: all of it
    assert _attrs(alone) == root
    tree = xr.open_datatree(alone, engine="h5netcdf")
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "school")
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "school")
    assert list(tree["posterior"]["school"].values) == list(az.from_netcdf(alone).posterior.school)
    with h5py.File(alone, "r") as f:
        mu, diverging = f["posterior"]["mu"], f["sample_stats"]["diverging"]
        assert (mu.attrs["units"], list(mu.attrs["bounds"])) == ("points", [-50.0, 50.0])
        assert np.isnan(mu.fillvalue) and diverging.fillvalue == 0
        assert f["sample_stats"]["tree_depth"].fillvalue == -1
        assert mu.chunks == (1, 20) and mu.compression is None  # float draws: no deflate
        assert f["sample_stats"]["tree_depth"].compression == "gzip"
        assert "mpi_pymc_shards" not in f["log_likelihood"].attrs  # its values are in the file


def test_chunks_are_one_chain_wide_and_cut_a_draw_only_when_it_alone_is_too_large():
    assert _chunks((4, 1000, 8), 8) == (1, 1000, 8)
    assert _chunks((2, 100_000, 1000), 8) == (1, CHUNK_BYTES // 8000, 1000)
    assert _chunks((2, 10, 10**6), 8) == (1, 1, CHUNK_BYTES // 8)
    assert _chunks((3, 7), 1) == (1, 7)


def test_packing_twice_is_a_no_op(shards_run, tmp_path):
    out = _copy(shards_run, tmp_path / "run")
    assert pack(out).state == "packed"
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    again = pack(out)
    assert again.state == "already" and "nothing to pack" in again.line()
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before


def test_an_output_open_in_a_reader_keeps_its_shards(shards_run, tmp_path):
    """A lazily opened ArviZ object would read NaN once the shards are gone: not packed."""
    out = _copy(shards_run, tmp_path / "run")
    with h5py.File(out, "r"):
        result = pack(out)
    assert result.state == "kept" and "open in another process" in result.line()
    assert not is_packed(out) and missing_shards(out) == []
    assert pack(out).state == "packed"


def test_a_missing_shard_is_named_in_one_line_and_never_packed_as_nan(shards_run, tmp_path):
    out = _copy(shards_run, tmp_path / "run")
    gone = Path(str(out) + ".parts") / "s000" / "rank00001.h5"
    gone.unlink()
    assert missing_shards(out) == [str(gone)]
    with pytest.raises(MissingShards) as raised:
        check_shards(out)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert str(gone) in message and "copy fit.h5.parts/ next to fit.h5" in message
    assert "python -m mpi_pymc pack fit.h5" in message
    original = out.read_bytes()
    with pytest.raises(MissingShards):
        pack(out)
    assert out.read_bytes() == original and not is_packed(out)

    # A shard that exists but is cut short counts as missing too.
    torn = Path(str(out) + ".parts") / "post-000" / "rank00000.h5"
    torn.write_bytes(torn.read_bytes()[:100])
    assert missing_shards(out) == [str(torn), str(gone)]

    # The unpacked file copied alone: every shard is missing, and plain ArviZ reads NaN.
    alone = tmp_path / "alone" / "fit.h5"
    alone.parent.mkdir()
    shutil.copy(shards_run, alone)
    assert len(missing_shards(alone)) == 4
    assert np.isnan(az.from_netcdf(alone).posterior.mu.values).all()


@pytest.mark.parametrize("point", ["copied", "replaced"])
def test_a_pack_killed_before_or_after_its_rename_leaves_a_readable_output(
    shards_run, tmp_path, point
):
    out = _copy(shards_run, tmp_path / "run")
    parts = Path(str(out) + ".parts")
    draws = _arviz_values(out)

    proc = _pack_in_subprocess(out, point)

    assert proc.returncode == -9, proc.stderr  # SIGKILL
    _assert_same(_arviz_values(out), draws)
    assert parts.is_dir()
    stale = list(out.parent.glob("fit.h5.pack*.tmp"))
    if point == "copied":  # the old shard-backed file, its shards, and the dead pack's copy
        assert not is_packed(out) and missing_shards(out) == [] and len(stale) == 1
        assert pack(out).state == "packed"
    else:  # the packed file; the shards only wait to be removed
        assert is_packed(out) and stale == []
        assert pack(out).state == "already"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit.h5"]
    _assert_same(_arviz_values(out), draws)


def test_too_little_room_for_the_packed_copy_fails_cleanly_and_leaves_the_original(
    shards_run, tmp_path
):
    """A real write limit (the file size limit, failing as a full disk or a quota would) that
    lets the copy of OUT's structure through but not the values, through ``pack_main``: exit
    1, one line, OUT and its shards untouched, no copy left."""
    out = _copy(shards_run, tmp_path / "run")
    original, limit = out.read_bytes(), out.stat().st_size + 1024
    code = (
        "import resource, signal, sys, argparse\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from mpi_pymc.output.packing import pack_main\n"
        "sys.exit(pack_main(argparse.Namespace(path=sys.argv[1])))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], env=env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "it is unchanged: File too large" in proc.stderr
    assert out.read_bytes() == original and missing_shards(out) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit.h5", "fit.h5.parts"]


def test_a_failed_rename_leaves_the_original_and_no_copy(shards_run, tmp_path, monkeypatch):
    """The last step failing (everything written, the rename refused): our own clean-up path."""
    out = _copy(shards_run, tmp_path / "run")
    original = out.read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        pack(out)
    monkeypatch.undo()
    assert out.read_bytes() == original and missing_shards(out) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit.h5", "fit.h5.parts"]


def test_a_renamed_output_is_packed_but_leaves_the_shards_other_copies_map(shards_run, tmp_path):
    out = _copy(shards_run, tmp_path / "run")
    renamed = out.with_name("copy.h5")
    shutil.copy(out, renamed)  # both map fit.h5.parts/
    draws = _arviz_values(out)
    result = pack(renamed)
    assert result.state == "packed"
    assert result.left_in_place == (f"{out}.parts/",)
    assert f"did not remove {out}.parts/" in result.line()
    assert missing_shards(out) == []  # fit.h5 still reads its draws
    _assert_same(_arviz_values(renamed), draws)


def test_pack_main_packs_and_refuses_in_one_line(shards_run, tmp_path, capsys):
    out = _copy(shards_run, tmp_path / "run")
    with h5py.File(out, "r+") as f:  # a run stopped early: resume continues from its shards
        completed = f.attrs["draws_completed"]
        f.attrs["draws_completed"] = np.where(np.arange(len(completed)) == 0, 10, completed)
    assert pack_main(argparse.Namespace(path=str(out))) == 2
    assert "partial run (10 of 20 draws" in capsys.readouterr().err
    assert not is_packed(out) and not Path(str(out) + ".lock").exists()
    with h5py.File(out, "r+") as f:
        f.attrs["draws_completed"] = completed

    holder = subprocess.Popen(  # a live job holds the output (its own process: see output_lock)
        [sys.executable, "-c", HOLD_LOCK, str(out)], env=env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert pack_main(argparse.Namespace(path=str(out))) == 2
        assert "in use by another job" in capsys.readouterr().err
    finally:
        holder.communicate("", timeout=60)

    lines: list[str] = []
    assert pack_main(argparse.Namespace(path=str(out)), echo=lines.append) == 0
    assert len(lines) == 1 and lines[0].startswith(f"packed 4 shard file(s) into {out}")
    assert is_packed(out) and not Path(str(out) + ".lock").exists()

    missing = tmp_path / "nothing.h5"
    assert pack_main(argparse.Namespace(path=str(missing))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


PACK_ON_RANKS = """
import sys
from mpi4py import MPI
from mpi_pymc.core.errors import AgreedError
from mpi_pymc.output.packing import pack_on_rank0
comm = MPI.COMM_WORLD
for path in sys.argv[1:]:
    try:
        result = pack_on_rank0(comm, path, echo=lambda line: print("line:", line, flush=True))
        print(f"rank {comm.Get_rank()}: {result.state}", flush=True)
    except AgreedError as exc:
        print(f"rank {comm.Get_rank()}: agreed: {exc}", flush=True)
"""


def test_pack_on_rank0_packs_once_and_every_rank_learns_the_outcome(shards_run, tmp_path):
    """The call a run's ranks make at its end: rank 0 packs and prints; missing shards are an
    error every rank raises, so no rank goes on with a file that reads as NaN."""
    good = _copy(shards_run, tmp_path / "good")
    broken = _copy(shards_run, tmp_path / "broken")
    (Path(str(broken) + ".parts") / "s000" / "rank00000.h5").unlink()
    draws = _arviz_values(good)
    cmd = [mpirun_or_skip(), "-n", "2", sys.executable, "-c", PACK_ON_RANKS, str(broken),
           str(good), str(good)]  # fmt: skip
    proc = launch(cmd, 120, env=env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    agreed = sorted(line for line in lines if "agreed:" in line)
    assert [line.split(":")[0] for line in agreed] == ["rank 0", "rank 1"]
    assert all("rank00000.h5" in line and "pack" in line for line in agreed)
    assert sorted(line for line in lines if line.endswith(("packed", "already"))) == [
        "rank 0: already", "rank 0: packed", "rank 1: already", "rank 1: packed"
    ]  # fmt: skip
    printed = [line for line in lines if line.startswith("line:")]
    assert len(printed) == 1 and "can be copied alone" in printed[0]  # "already" stays quiet
    _assert_same(_arviz_values(good), draws)

    from mpi4py import MPI  # one rank, in this process

    lines_here: list[str] = []
    again = _copy(shards_run, tmp_path / "self")
    assert pack_on_rank0(MPI.COMM_SELF, again, echo=lines_here.append).state == "packed"
    assert len(lines_here) == 1 and is_packed(again)


def test_summary_and_the_api_loader_name_missing_shards(shards_run, tmp_path):
    """An unpacked output copied without OUT.parts/: `summary` exits 2 with one line naming the
    shards, and `open_result` (what sample() returns through) raises; neither reads NaN."""
    alone = Path(shutil.copy(shards_run, tmp_path / shards_run.name))
    proc = run_ranks(None, ["summary", str(alone)], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "fit.h5.parts/" in lines[0] and "mpi_pymc pack" in lines[0]
    with pytest.raises(MissingShards, match="missing or unreadable"):
        open_result(str(alone))
