"""cond_any: the per-chain value of lax.cond, and under vmap the branch runs only when needed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpi_pymc.sampling.batched_cond import cond_any


def _counting(calls: list):
    def expensive(x, pair):
        jax.debug.callback(lambda: calls.append(1))
        return x * 2.0 + pair[0], (pair[1] - x, pair[0])

    def cheap(x, pair):
        return x, pair

    return expensive, cheap


@pytest.mark.parametrize("pattern", [[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]])
def test_each_chain_gets_its_own_branch(pattern):
    expensive, cheap = _counting([])
    preds = jnp.asarray(pattern, bool)
    x = jnp.arange(4.0, dtype=jnp.float32)
    pair = (
        jnp.float32(1.5),
        jnp.linspace(0.0, 1.0, 4, dtype=jnp.float32),
    )  # one unbatched, one batched leaf

    def one(p, x, b):
        return cond_any(p, expensive, cheap, x, (pair[0], b))

    got = jax.jit(jax.vmap(one))(preds, x, pair[1])
    want = [
        jax.lax.cond(p, expensive, cheap, xi, (pair[0], bi))
        for p, xi, bi in zip(preds, x, pair[1], strict=True)
    ]
    for leaf_got, leaf_want in zip(
        jax.tree_util.tree_leaves(got),
        zip(*[jax.tree_util.tree_leaves(w) for w in want], strict=True),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(leaf_got), np.stack(leaf_want))


def test_vmapped_chains_skip_the_branch_when_no_chain_needs_it():
    calls: list = []
    expensive, cheap = _counting(calls)
    run = jax.jit(jax.vmap(lambda p, x: cond_any(p, expensive, cheap, x, (x, x))))
    x = jnp.arange(4.0, dtype=jnp.float32)
    for pattern in ([0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]):
        jax.block_until_ready(run(jnp.asarray(pattern, bool), x))
    jax.effects_barrier()
    # A plain lax.cond under vmap is a select: it would have run the branch on all four calls.
    assert len(calls) == 1


def test_an_unbatched_predicate_and_no_vmap_are_a_plain_cond():
    calls: list = []
    expensive, cheap = _counting(calls)
    x = jnp.arange(3.0, dtype=jnp.float32)
    got = jax.jit(lambda p: cond_any(p, expensive, cheap, x, (x, x)))(jnp.asarray(False))
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(x))
    mapped = jax.jit(jax.vmap(lambda x: cond_any(jnp.asarray(True), expensive, cheap, x, (x, x))))
    np.testing.assert_array_equal(np.asarray(mapped(x)[0]), np.asarray(3.0 * x))
    jax.effects_barrier()
    assert len(calls) == 1
