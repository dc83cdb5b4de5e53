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

A third rewrite needs the data: a likelihood's support check on its observed values
(``switch((y >= 0) & (y <= 1), logp, -inf)`` for a Bernoulli, ``y >= 0`` for a Poisson...) depends
on the data alone, which stay the same for a whole run, yet the JAX program evaluates it at every
gradient. :func:`fold_data_conditions` evaluates such conditions once, on the data; where one holds
(or fails) for every element the switch becomes its branch. On this project's CPU the masked
select also kept XLA from fusing the log-density terms into their sum: it cost a NUTS leapfrog of
the logistic example 15-20% (``benchmarks/README.md``).

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


def _data_only(fgraph, var, data_inputs: set) -> bool:
    """Whether ``var`` depends on data inputs of ``fgraph`` and on no other input."""
    from pytensor.graph.traversal import ancestors

    inputs = set(fgraph.inputs)
    used = {a for a in ancestors([var]) if a in inputs}
    return bool(used) and used <= data_inputs


def fold_data_conditions(fgraph, data_values: dict) -> int:
    """Replace every ``switch(cond, a, b)`` whose ``cond`` depends on data alone and is the same
    for every element by ``a`` or ``b`` (broadcast to the switch's shape). ``data_values`` maps
    the graph's data inputs to their arrays, which must be the arrays every later call of the
    program passes. Returns how many switches went; a condition that cannot be evaluated, or
    varies along the data, is left as it is."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    data_inputs = set(data_values)
    switches = [
        node
        for node in fgraph.toposort()
        if isinstance(node.op, Elemwise)
        and isinstance(node.op.scalar_op, ps.Switch)
        and _data_only(fgraph, node.inputs[0], data_inputs)
    ]
    if not switches:
        return 0
    conditions = list(dict.fromkeys(node.inputs[0] for node in switches))
    needed = [v for v in fgraph.inputs if v in data_inputs]
    try:
        evaluate = pytensor.function(
            needed,
            conditions,
            mode=Mode(linker="py", optimizer="fast_compile"),
            on_unused_input="ignore",
        )
        values = evaluate(*(data_values[v] for v in needed))
    except Exception:  # noqa: BLE001  (an optimisation only: the switch stays)
        return 0
    uniform = {}
    for cond, value in zip(conditions, values, strict=True):
        value = np.asarray(value)
        if value.size and (value.all() or not value.any()):
            uniform[cond] = bool(value.flat[0])
    folded = 0
    for node in switches:
        cond, when_true, when_false = node.inputs
        if cond not in uniform or node not in fgraph.apply_nodes:
            continue
        out = node.outputs[0]
        branch = when_true if uniform[cond] else when_false
        if branch.type.shape != out.type.shape:
            branch = pt.broadcast_to(branch, out.shape)
        if branch.type.dtype != out.type.dtype:
            branch = pt.cast(branch, out.type.dtype)
        if branch.type.shape != out.type.shape or branch.type.dtype != out.type.dtype:
            continue
        fgraph.replace(out, branch, reason="fold_data_conditions", import_missing=True)
        folded += 1
    return folded
