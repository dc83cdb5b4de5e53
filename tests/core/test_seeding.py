import numpy as np
import pytest

from mpi_pymc.core import seeding


@pytest.mark.parametrize("chains,ranks", [(1, 1), (4, 1), (4, 2), (4, 4), (7, 3), (10, 4), (5, 5)])
def test_chain_groups_partition_chains_contiguously(chains, ranks):
    groups = seeding.chain_groups(chains, ranks)
    assert [c for g in groups for c in g] == list(range(chains))
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    assert min(sizes) >= 1


def test_more_ranks_than_chains_is_refused():
    with pytest.raises(ValueError):
        seeding.chain_group(3, 4, 0)


def test_chain_seed_is_the_spawned_child_of_the_root_seed():
    children = np.random.SeedSequence(2024).spawn(6)
    for c, child in enumerate(children):
        mine = seeding.chain_seed_sequence(2024, c)
        np.testing.assert_array_equal(mine.generate_state(4), child.generate_state(4))


def test_keys_depend_only_on_root_seed_and_chain():
    one_rank = seeding.sampler_keys(7, range(0, 8))
    two_ranks = np.concatenate([seeding.sampler_keys(7, g) for g in seeding.chain_groups(8, 2)])
    np.testing.assert_array_equal(one_rank, two_ranks)
    assert len({tuple(k) for k in one_rank}) == 8
    assert not np.array_equal(seeding.sampler_keys(8, range(8)), one_rank)


def test_jitter_stream_differs_from_sampler_stream():
    a = seeding.jitter_rng(3, 0).integers(0, 2**32, size=2)
    b = seeding.sampler_key(3, 0)
    assert not np.array_equal(a.astype(np.uint32), b)
    np.testing.assert_array_equal(
        seeding.jitter_rng(3, 1).random(3), seeding.jitter_rng(3, 1).random(3)
    )
