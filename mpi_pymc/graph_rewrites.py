"""Rewrites of the PyTensor graph before it becomes JAX: fewer transcendental functions per element.

PyTensor's own rewrites aim at its C backend. Two of their results cost a JAX program on a CPU
more than they need to, in the models PyMC users write most (a Bernoulli or Binomial likelihood
with ``logit_p``: every logistic regression):

- ``switch(y, -softplus(-eta), -softplus(eta))`` (PyMC's ``log(sigmoid)`` and
  ``log1p(-sigmoid)`` after PyTensor's stabilisation) computes both branches for every
  observation and selects one. Elementwise, ``switch(c, f(a), f(b)) == f(switch(c, a, b))``
  for any unary elementwise ``f``, so the branch is taken first and ``f`` runs once;
- PyTensor's JAX translation of ``softplus`` is a four-way piecewise function that evaluates
  ``exp(x)``, ``exp(-x)`` and ``log1p(exp(x))`` for every element, and its gradient
  differentiates every piece. ``max(x, 0) + log1p(exp(-|x|))`` is exact to rounding for every
  ``x`` and needs one ``exp`` and one ``log1p``; its gradient reuses the ``exp``.

Measured in ``benchmarks/README.md`` ("The log-density: fewer transcendentals"). The rewrites
change no value beyond rounding; ``tests/test_graph_rewrites.py`` checks log-density and
gradient against PyMC's compiled functions on several models.
"""

from __future__ import annotations


def _lift_switch():
    import pytensor.tensor as pt
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    @node_rewriter([Elemwise])
    def lift_switch_through_unary(fgraph, node):
        """``switch(c, f(a), f(b))`` -> ``f(switch(c, a, b))`` for one unary elementwise f."""
        if not isinstance(node.op.scalar_op, ps.Switch):
            return None
        cond, left, right = node.inputs
        if left.owner is None or right.owner is None:
            return None
        op = left.owner.op
        if not (
            isinstance(op, Elemwise)
            and op == right.owner.op
            and len(left.owner.inputs) == 1
            and len(left.owner.outputs) == 1
            and not op.inplace_pattern
        ):
            return None
        # Only when the branches are used by this switch alone: otherwise f runs more often.
        if len(fgraph.clients[left]) != 1 or len(fgraph.clients[right]) != 1:
            return None
        (a,), (b,) = left.owner.inputs, right.owner.inputs
        if a.type.dtype != b.type.dtype:
            return None
        lifted = op(pt.switch(cond, a, b))
        old = node.outputs[0]
        if (lifted.type.dtype, lifted.type.broadcastable) != (
            old.type.dtype,
            old.type.broadcastable,
        ):
            return None
        return [lifted]

    return lift_switch_through_unary


def _lean_softplus():
    import pytensor.tensor as pt
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.scalar.math import Softplus
    from pytensor.tensor.elemwise import Elemwise

    @node_rewriter([Elemwise])
    def lean_softplus(fgraph, node):
        """``softplus(x)`` -> ``max(x, 0) + log1p(exp(-|x|))``: one exp and one log1p."""
        if not isinstance(node.op.scalar_op, Softplus):
            return None
        (x,) = node.inputs
        lean = pt.maximum(x, 0) + pt.log1p(pt.exp(-pt.abs(x)))
        old = node.outputs[0]
        if (lean.type.dtype, lean.type.broadcastable) != (old.type.dtype, old.type.broadcastable):
            return None
        return [lean]

    return lean_softplus


def optimize_for_jax(fgraph) -> None:
    """PyTensor's JAX rewrites, then the two above (in place).

    PyTensor's fusion is left out: it would hide the elementwise graph inside ``Composite`` ops
    (JAX gains nothing from it, XLA fuses on its own), and nothing may run after the softplus
    rewrite, because PyTensor's canonicalisation turns ``log1p(exp(x))`` back into softplus.
    """
    from pytensor.compile import mode
    from pytensor.graph.rewriting.basic import EquilibriumGraphRewriter, in2out

    mode.JAX.excluding("fusion").optimizer.rewrite(fgraph)
    EquilibriumGraphRewriter([_lift_switch()], max_use_ratio=100).rewrite(fgraph)
    in2out(_lean_softplus()).rewrite(fgraph)
