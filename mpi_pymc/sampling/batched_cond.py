"""A ``lax.cond`` that stays a branch when chains are vmapped.

Under ``vmap`` a ``lax.cond`` whose predicate differs per chain becomes a ``select``: both
branches run at every call for every chain. For a rare, expensive branch (the mass-matrix
estimate at a warmup window's end: a QR and an eigenproblem over the window's draws) that puts
its cost on every warmup iteration of a vectorized run, where sequential chains pay it only at
the window ends. :func:`cond_any` keeps the branch: vmapped, it runs the expensive branch (for
the whole batch, each chain then keeping its own branch's result) only on the calls where at
least one chain's predicate is true. The chains of a batch share the warmup schedule, so that is
the same iterations a sequential chain pays at, unless some chains ended warmup early.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import custom_batching


def _batched(tree, batched, axis_size: int):
    """``tree`` with every leaf that is not batched broadcast along a new leading axis."""
    return jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))), tree, batched
    )


def cond_any(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``lax.cond(pred, true_fn, false_fn, *operands)``, with the same value per chain under
    ``vmap``, where it evaluates ``true_fn`` only on the calls where some chain's ``pred`` holds.
    Not differentiable (it is for adaptation, which is not)."""

    @custom_batching.custom_vmap
    def branch(pred, *operands):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)

    @branch.def_vmap
    def _rule(axis_size, in_batched, pred, *operands):
        preds = _batched(pred, in_batched[0], axis_size)
        operands = tuple(
            _batched(op, b, axis_size) for op, b in zip(operands, in_batched[1:], strict=True)
        )

        def some(preds, *operands):  # a select per chain, both branches for the whole batch
            return jax.vmap(lambda p, *ops: jax.lax.cond(p, true_fn, false_fn, *ops))(
                preds, *operands
            )

        def none(preds, *operands):
            return jax.vmap(false_fn)(*operands)

        out = jax.lax.cond(jnp.any(preds), some, none, preds, *operands)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return branch(pred, *operands)
