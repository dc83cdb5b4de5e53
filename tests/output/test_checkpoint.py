"""Per-rank checkpoints (mpi_pymc.output.checkpoint), in-process: each chain group's part with its
hash, a manifest naming them, the previous checkpoint kept, and a torn one detected."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mpi_pymc.core.config import UserError
from mpi_pymc.output import checkpoint

CHAINS = 7
GROUPS = [range(0, 3), range(3, 5), range(5, 7)]  # three ranks' chain groups


def _state(draw: int) -> list[np.ndarray]:
    """Every chain's leaves: a position (chains, 4) and a key (chains, 2) that say the draw."""
    chains = np.arange(CHAINS)
    return [
        draw + chains[:, None] + np.linspace(0, 1, 4)[None, :],
        np.stack([chains, np.full(CHAINS, draw)], axis=1).astype(np.uint32),
    ]


def _save(path: str, label: str, draw: int) -> None:
    """What a run's ranks do after a chunk: each writes its part, then rank 0 the manifest."""
    leaves = _state(draw)
    parts = [
        checkpoint.write_part(path, label, g, [leaf[g.start : g.stop] for leaf in leaves])
        for g in GROUPS
    ]
    meta = {"chains": CHAINS, "draws_done": draw, "iteration": draw, "settings": {}}
    checkpoint.write_manifest(path, meta, parts)


def _assert_state(ckpt: checkpoint.Checkpoint, draw: int) -> None:
    for got, want in zip(ckpt.leaves, _state(draw), strict=True):
        np.testing.assert_array_equal(got, want[ckpt.chains.start : ckpt.chains.stop])


@pytest.fixture
def path(tmp_path) -> str:
    return checkpoint.checkpoint_path(str(tmp_path / "run.h5"))


def test_any_chain_range_reads_back_across_parts(path):
    _save(path, "a-1", 100)
    _assert_state(checkpoint.read_checkpoint(path), 100)
    for wanted in (range(0, 7), range(2, 4), range(4, 5), range(1, 7)):  # other rank counts
        ckpt = checkpoint.read_checkpoint(path, wanted)
        assert ckpt.chains == wanted and ckpt.fallback is None
        _assert_state(ckpt, 100)


def test_only_the_latest_two_checkpoints_stay(path):
    for i, draw in enumerate((100, 200, 300), start=1):
        _save(path, f"a-{i}", draw)
    names = sorted(os.listdir(checkpoint.parts_dir(path)))
    assert len(names) == 2 * len(GROUPS), names
    assert all(n.startswith(("a-2.", "a-3.")) for n in names)
    _assert_state(checkpoint.read_checkpoint(path), 300)
    latest = checkpoint.read_checkpoint(checkpoint.previous_path(path))  # still readable alone
    assert latest.draws_done == 200


@pytest.mark.parametrize("damage", ["truncate part", "remove part", "truncate manifest"])
def test_a_torn_checkpoint_is_detected_and_the_previous_one_used(path, damage):
    _save(path, "a-1", 100)
    _save(path, "a-2", 200)
    part = os.path.join(checkpoint.parts_dir(path), f"a-2.c{GROUPS[1].start}-{GROUPS[1].stop}.npz")
    if damage == "truncate part":
        with open(part, "r+b") as handle:
            handle.truncate(os.path.getsize(part) // 2)
    elif damage == "remove part":
        os.remove(part)
    else:
        with open(path, "r+b") as handle:
            handle.truncate(10)
    ckpt = checkpoint.read_checkpoint(path)
    _assert_state(ckpt, 100)
    assert ckpt.fallback
    # A rank whose chains lie only in intact parts would read the latest: a run's ranks
    # agree on the checkpoint (mpi_pymc.driver.resume._resolve_resume), here one process stands
    # for all.
    if damage != "truncate manifest":
        assert checkpoint.verify(path, checkpoint.candidates(path)[0][1], GROUPS[0]) is None


def test_both_torn_is_refused_with_one_line(path):
    _save(path, "a-1", 100)
    _save(path, "a-2", 200)
    for manifest in (path, checkpoint.previous_path(path)):
        with open(manifest, "r+b") as handle:
            handle.truncate(10)
    with pytest.raises(UserError, match="corrupted and so is the previous one") as caught:
        checkpoint.read_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_no_checkpoint_says_how_to_start_again(path):
    with pytest.raises(UserError, match="--overwrite"):
        checkpoint.read_checkpoint(path)


def test_a_failed_part_write_leaves_nothing_aside(path, monkeypatch):
    _save(path, "a-1", 100)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        checkpoint.write_part(path, "a-2", GROUPS[0], [leaf[:3] for leaf in _state(200)])
    monkeypatch.undo()
    assert not [n for n in os.listdir(checkpoint.parts_dir(path)) if n.startswith("a-2")]
    _assert_state(checkpoint.read_checkpoint(path), 100)


def test_a_version_1_checkpoint_still_resumes(tmp_path):
    """Before per-rank parts, OUT.ckpt held every chain's leaves itself."""
    import json

    path = str(tmp_path / "old.h5.ckpt")
    leaves = _state(50)
    meta = {"chains": CHAINS, "draws_done": 50, "iteration": 50, "format_version": 1,
            "leaves": len(leaves)}  # fmt: skip
    arrays = {f"leaf_{i:03d}": leaf for i, leaf in enumerate(leaves)}
    np.savez(open(path, "wb"), meta=np.array(json.dumps(meta)), **arrays)
    _assert_state(checkpoint.read_checkpoint(path, range(2, 6)), 50)


def test_remove_takes_every_file(path):
    _save(path, "a-1", 100)
    _save(path, "a-2", 200)
    checkpoint.remove_checkpoint(path)
    assert not any(os.path.exists(p) for p in checkpoint.checkpoint_files(path))
