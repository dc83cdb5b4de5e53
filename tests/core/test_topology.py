import pytest

from mpi_pymc.core.config import UserError
from mpi_pymc.core.topology import assign_gpus, cores_to_pin, shard_groups, visible_gpus


def test_one_gpu_per_local_rank_by_default():
    gpus = ["0", "1", "2", "3"]
    assert [assign_gpus(gpus, r, 4, None) for r in range(4)] == [["0"], ["1"], ["2"], ["3"]]


def test_several_gpus_per_rank():
    gpus = [str(i) for i in range(8)]
    assert assign_gpus(gpus, 1, 4, 2) == ["2", "3"]


def test_launcher_already_bound_one_gpu_per_task():
    # SLURM --gpus-per-task=1 leaves each task exactly its own GPU visible.
    assert assign_gpus(["5"], 3, 4, None) == ["5"]


def test_cpu_when_no_gpu_or_zero_requested():
    assert assign_gpus([], 0, 2, None) == []
    assert assign_gpus(["0", "1"], 0, 2, 0) == []


def test_too_few_gpus_is_a_user_error():
    with pytest.raises(UserError, match="needs 8 GPUs"):
        assign_gpus(["0", "1", "2", "3"], 0, 4, 2)
    with pytest.raises(UserError, match="no GPU is visible"):
        assign_gpus([], 0, 1, 1)


def test_visible_gpus_reads_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_cpu_ranks_pin_to_equal_shares_only_when_the_launcher_did_not():
    assert [cores_to_pin([0, 1], 2, r, 2) for r in range(2)] == [[0], [1]]
    assert [cores_to_pin(list(range(8)), 8, r, 2) for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # Oversubscribed: ranks beyond the cores share them round-robin.
    assert [cores_to_pin([0, 1], 2, r, 4) for r in range(4)] == [[0], [1], [0], [1]]
    assert cores_to_pin([3], 8, 1, 2) == []  # the launcher already pinned this rank
    assert cores_to_pin([0, 1], 2, 0, 1) == []  # a rank alone keeps the whole node


def test_data_shards_within_a_rank_of_s_devices():
    layout = shard_groups(4, world_size=3, local_devices=4)
    assert layout.ranks_per_group == 1
    assert [layout.chain_group_of(r) for r in range(3)] == [0, 1, 2]
    assert {layout.shard_of(r) for r in range(3)} == {0}


def test_data_shards_across_ranks_of_one_device():
    # r = g * S + s: ranks 0-1 are chain group 0's two shards, ranks 2-3 chain group 1's.
    layout = shard_groups(2, world_size=4, local_devices=1)
    assert layout.ranks_per_group == 2
    assert [layout.chain_group_of(r) for r in range(4)] == [0, 0, 1, 1]
    assert [layout.shard_of(r) for r in range(4)] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("shards", "world", "devices", "needle"),
    [
        (2, 3, 1, "2 does not divide the 3 ranks: start a multiple of 2 ranks"),
        (4, 1, 1, "4 does not divide the 1 ranks"),
        (2, 2, 3, "this rank has 3: start each rank with 2"),
        (4, 4, 2, "this rank has 2: start each rank with 4"),
    ],
)
def test_data_shards_layouts_that_leave_a_device_or_rank_idle_are_refused(
    shards, world, devices, needle
):
    with pytest.raises(UserError, match=needle):
        shard_groups(shards, world, devices)
