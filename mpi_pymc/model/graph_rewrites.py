"""Rewrites of the PyTensor graph before it becomes JAX: fewer transcendentals, finite gradients.

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

Two more keep the gradient finite. JAX evaluates both pieces of a piecewise function and
gives the piece not taken a zero cotangent, which times that piece's own infinite derivative
is NaN: :func:`guard_switch_branches` feeds each piece of ``switch(z < k, f(z), g(z))`` only
the ``z`` it is taken for (PyMC's normal log-CDF and log-survival, so every censored or truncated
normal), and :func:`_safe_log1mexp` writes ``log1mexp`` out as such a switch first (a Weibull's
survival).

One more keeps the gradient right: :func:`exact_square_distances` writes PyMC's squared
distances between input rows (every stationary ``pm.gp`` covariance) as sums of squared
differences, exactly 0 for equal rows, so that XLA's rounding cannot put a clip at 0 on
different sides in different fusions (the lengthscale's gradient of a small ``gp.Marginal`` was
13.4 off under ``jit``).

Measured in ``benchmarks/README.md`` ("The log-density: fewer transcendentals"). The rewrites
change no value beyond rounding; ``tests/model/test_graph_rewrites.py`` checks log-density and
gradient against PyMC's compiled functions on several models.
"""

from __future__ import annotations


def _same_type(new, old) -> bool:
    """Whether a replacement has the dtype and broadcast pattern of what it replaces."""
    return (new.type.dtype, new.type.broadcastable) == (old.type.dtype, old.type.broadcastable)


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
        return [lifted] if _same_type(lifted, node.outputs[0]) else None

    return lift_switch_through_unary


def _lean_softplus():
    import pytensor.tensor as pt
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.scalar.math import Softplus
    from pytensor.tensor.elemwise import Elemwise

    @node_rewriter([Elemwise])
    def lean_softplus(fgraph, node):
        """``softplus(x)`` -> ``max(x, 0) + log1p(exp(min(x, -x)))``: one exp and one log1p.

        ``min(x, -x)``, not ``-|x|``: JAX differentiates ``|x|`` at 0 as 1 but splits a tie of
        ``max``/``min`` evenly, so with ``-|x|`` the gradient at exactly 0 was 0.5 - 0.5 = 0
        instead of 0.5 (every logit-linear model at its initial point, where eta = 0)."""
        if not isinstance(node.op.scalar_op, Softplus):
            return None
        (x,) = node.inputs
        lean = pt.maximum(x, 0) + pt.log1p(pt.exp(pt.minimum(x, -x)))
        return [lean] if _same_type(lean, node.outputs[0]) else None

    return lean_softplus


def _safe_log1mexp():
    import numpy as np
    import pytensor.tensor as pt
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.scalar.math import Log1mexp
    from pytensor.tensor.elemwise import Elemwise

    @node_rewriter([Elemwise])
    def safe_log1mexp(fgraph, node):
        """``log1mexp(x)`` -> ``switch(x < log(1/2), log1p(-exp(x)), log(-expm1(x)))``, the
        pieces PyTensor's JAX translation selects between, as a graph that
        :func:`guard_switch_branches` (run after this) then guards: near ``x = 0`` the first
        piece is ``log(0)``, and its gradient, multiplied by the zero ``where`` passes it, was
        NaN. PyMC's log-survival of a Weibull, and every ``pm.Censored`` of a distribution whose
        survival it derives from the CDF, go through here."""
        if not isinstance(node.op.scalar_op, Log1mexp):
            return None
        (x,) = node.inputs
        half = pt.constant(np.full((1,) * x.type.ndim, np.log(0.5)), dtype=x.type.dtype)
        piecewise = pt.switch(pt.lt(x, half), pt.log1p(-pt.exp(x)), pt.log(-pt.expm1(x)))
        return [piecewise] if _same_type(piecewise, node.outputs[0]) else None

    return safe_log1mexp


def _squared_rows(var):
    """``a`` (rows by features) where ``var`` is ``sum(sqr(a), axis=1)``, or ``sqr(a[:, 0])``
    for one feature (what PyTensor makes of that sum); else None."""
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import CAReduce, DimShuffle, Elemwise

    node = var.owner
    if node is None:
        return None
    if isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Sqr):
        squeeze = node.inputs[0].owner
        if (
            squeeze is not None
            and isinstance(squeeze.op, DimShuffle)
            and tuple(squeeze.op.new_order) == (0,)
            and squeeze.inputs[0].type.ndim == 2
        ):
            return squeeze.inputs[0]
        return None
    if (
        isinstance(node.op, CAReduce)
        and isinstance(node.op.scalar_op, ps.Add)
        and tuple(node.op.axis or ()) == (1,)
    ):
        square = node.inputs[0].owner
        if (
            square is not None
            and isinstance(square.op, Elemwise)
            and isinstance(square.op.scalar_op, ps.Sqr)
            and square.inputs[0].type.ndim == 2
        ):
            return square.inputs[0]
    return None


def _added_terms(var) -> list:
    """The terms of a (nested) elementwise sum."""
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    node = var.owner
    if node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Add):
        return [t for i in node.inputs for t in _added_terms(i)]
    return [var]


def _broadcast_along(var, new_order: tuple):
    """What ``var`` broadcasts (``new_order`` (0, 'x'): along columns; ('x', 0): rows)."""
    from pytensor.tensor.elemwise import DimShuffle

    node = var.owner
    if node is not None and isinstance(node.op, DimShuffle) and node.op.new_order == new_order:
        return node.inputs[0]
    return None


def _is_constant(var, value: float) -> bool:
    import numpy as np
    from pytensor.graph.basic import Constant

    return isinstance(var, Constant) and bool(np.all(np.asarray(var.data) == value))


def _square_distance(clip_node):
    """``sum((a[:, None] - b[None, :])**2, -1)`` for PyMC's ``Stationary.square_dist``,
    ``clip(-2 a b^T + sum(a**2, 1)[:, None] + sum(b**2, 1)[None, :], 0, inf)``; None for
    anything else. The cross term is accepted only if PyTensor's canonical form of it is that
    of ``-2 dot(a, b^T)`` (pymc 6 writes a one-feature product as an outer ``mul``)."""
    import pytensor.tensor as pt
    from pytensor.graph.basic import equal_computations
    from pytensor.graph.rewriting.utils import rewrite_graph

    x, low, high = clip_node.inputs
    if x.type.ndim != 2 or not (_is_constant(low, 0.0) and _is_constant(high, float("inf"))):
        return None
    rows, cols, cross = [], [], []
    for term in _added_terms(x):
        along_columns = _broadcast_along(term, (0, "x"))
        along_rows = _broadcast_along(term, ("x", 0))
        if along_columns is not None and _squared_rows(along_columns) is not None:
            rows.append(_squared_rows(along_columns))
        elif along_rows is not None and _squared_rows(along_rows) is not None:
            cols.append(_squared_rows(along_rows))
        else:
            cross.append(term)
    if not (len(rows) == len(cols) == len(cross) == 1):
        return None
    (a,), (b,), (product,) = rows, cols, cross
    if a.type.dtype != x.type.dtype or b.type.dtype != x.type.dtype:
        return None
    got, expected = rewrite_graph(
        [product, -2.0 * pt.dot(a, b.T)],
        include=("canonicalize", "stabilize", "specialize"),
        clone=True,
    )
    if not equal_computations([got], [expected]):
        return None
    return pt.sum(pt.sqr(a[:, None, :] - b[None, :, :]), axis=-1)


def exact_square_distances(fgraph) -> int:
    """PyMC's squared distances between the rows of ``a`` and ``b`` (every stationary
    covariance of ``pm.gp``: ExpQuad, Matern, RatQuad, Exponential...) as the sum of squared
    differences, in place; returns how many.

    PyMC computes them as ``-2 a b^T + |a|^2 + |b|^2`` and clips at 0. Where two rows are equal
    (the diagonal of ``K(X, X)``) that is 0 only if every piece rounds the same way. PyTensor's
    C backend and JAX without ``jit`` do; XLA's algebraic simplifier does not (it writes
    ``(x / ls)**2`` as ``x**2 * ls**-2``), so the diagonal came out as -1e-16 to -1e-14, and
    the clip's gradient mask, recomputed in each fusion that needs it, took different sides of
    0 in different fusions: the gradient's terms from ``a b^T`` and from ``|a|^2`` no longer
    cancelled on the diagonal. The gradient with respect to a GP's lengthscale was 13.4 off
    (-13.21 instead of 0.24) on an 8-point ``gp.Marginal``, with the value right to 1e-12.
    ``(a_i - b_j)**2`` is exactly 0 for equal rows, whatever the rounding, and never negative,
    so no clip is left to disagree; it is also the more accurate form for close points.
    """
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    rewritten = 0
    for node in list(fgraph.toposort()):
        if not (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Clip)):
            continue
        if node not in fgraph.apply_nodes:  # replaced along with an earlier match
            continue
        exact = _square_distance(node)
        if exact is None or not _same_type(exact, node.outputs[0]):
            continue
        fgraph.replace(node.outputs[0], exact, reason="exact_square_distances", import_missing=True)
        rewritten += 1
    return rewritten


def _depends_elementwise(var, on) -> tuple[bool, bool]:
    """(whether ``var`` depends on ``on``, whether every path from ``on`` to it is Elemwise).

    One forward pass over ``var``'s ancestors in topological order (PyTensor's walk is
    iterative, so a deep graph, such as an unrolled recursion, does not exhaust Python's stack).
    """
    from pytensor.graph.traversal import io_toposort
    from pytensor.tensor.elemwise import Elemwise

    depends = {on}
    for node in io_toposort([on], [var]):
        if any(i in depends for i in node.inputs):
            if not isinstance(node.op, Elemwise):
                return True, False
            depends.update(node.outputs)
    return var in depends, True


def _of_alone(var, z) -> bool:
    """Whether ``var`` is a function of ``z`` and constants only. The boundary is a safe value
    for such a branch; one that also reads another variable (PyMC's ``log_diff_normal_cdf``,
    ``f(x, y)`` in the branch for ``y > 0``) can be singular there: with ``y`` set to the
    boundary, an OrderedProbit's gradient was NaN at its initial point."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    return all(isinstance(v, Constant) or v is z for v in graph_inputs([var], blockers=[z]))


def guard_switch_branches(fgraph) -> int:
    """``switch(z < k, f(z), g(z))`` -> ``switch(z < k, f(switch(z < k, z, k)), g(switch(z < k,
    k, z)))``, for a constant ``k`` and elementwise ``f`` and ``g`` (in place; returns how many).

    JAX evaluates both branches everywhere, and the gradient of ``where`` passes a zero to the
    branch not taken, which then multiplies that branch's own derivative: where the branch is
    infinite there (``log1p(-erfc(z / sqrt 2) / 2)`` is ``log(0)`` below ``z = -8.3``) the product
    is ``0 * inf = NaN``, and the NaN reaches the whole gradient. PyMC's normal log-CDF and
    log-survival (every ``pm.Censored`` normal, and ``pm.Truncated``) are such piecewise
    functions. Here each branch sees ``z`` only where it is taken and the boundary ``k`` (where
    both pieces are finite) elsewhere: the same values, a zero gradient where not taken.
    """
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise
    from pytensor.tensor.variable import TensorConstant

    # Comparison -> which branch sees the values below the boundary.
    below_is_true = {ps.LT: True, ps.LE: True, ps.GT: False, ps.GE: False}
    guarded = 0
    for node in list(fgraph.toposort()):
        if not (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Switch)):
            continue
        cond, when_true, when_false = node.inputs
        test = cond.owner
        if test is None or not isinstance(test.op, Elemwise):
            continue
        if type(test.op.scalar_op) not in below_is_true or len(test.inputs) != 2:
            continue
        left, right = test.inputs
        if isinstance(right, TensorConstant) and not isinstance(left, TensorConstant):
            z, k = left, right
        elif isinstance(left, TensorConstant) and not isinstance(right, TensorConstant):
            z, k = right, left  # k < z is z > k: which side is true does not change below
        else:
            continue
        # z's own shape everywhere: one boundary for every element.
        if k.type.ndim != z.type.ndim or not all(k.type.broadcastable):
            continue
        if node.outputs[0].type.ndim != z.type.ndim:
            continue
        bound = pt.cast(k, z.type.dtype)
        branches = []
        for branch, taken in ((when_true, True), (when_false, False)):
            depends, elementwise = _depends_elementwise(branch, z)
            if depends and elementwise and _of_alone(branch, z):
                seen = pt.switch(cond, z, bound) if taken else pt.switch(cond, bound, z)
                # The rest of the branch's graph stays shared with the other uses of it.
                branch = graph_replace(branch, replace={z: seen}, strict=False)
            branches.append(branch)
        if branches[0] is when_true and branches[1] is when_false:
            continue
        new = pt.switch(cond, *branches)
        if not _same_type(new, node.outputs[0]):
            continue
        fgraph.replace(node.outputs[0], new, reason="guard_switch_branches", import_missing=True)
        guarded += 1
    return guarded


def optimize_for_jax(fgraph) -> None:
    """PyTensor's JAX rewrites, then ours (in place).

    PyTensor's fusion is left out: it would hide the elementwise graph inside ``Composite`` ops
    (JAX gains nothing from it, XLA fuses on its own), and none of PyTensor's rewrites may run
    after ours: its canonicalisation turns ``log1p(exp(x))`` back into softplus and
    ``log1p(-exp(x))`` back into ``log1mexp``.
    """
    from pytensor.compile import mode
    from pytensor.graph.rewriting.basic import EquilibriumGraphRewriter, in2out

    # First: the pattern it matches is PyMC's, as the model's log-density has it.
    exact_square_distances(fgraph)
    mode.JAX.excluding("fusion").optimizer.rewrite(fgraph)
    EquilibriumGraphRewriter([_lift_switch()], max_use_ratio=100).rewrite(fgraph)
    in2out(_lean_softplus()).rewrite(fgraph)
    in2out(_safe_log1mexp()).rewrite(fgraph)
    guard_switch_branches(fgraph)


def _data_only(fgraph, var, data_inputs: set) -> bool:
    """Whether ``var`` depends on data inputs of ``fgraph`` and on no other input."""
    from pytensor.graph.traversal import ancestors

    inputs = set(fgraph.inputs)
    used = {a for a in ancestors([var]) if a in inputs}
    return bool(used) and used <= data_inputs


def fold_data_conditions(fgraph, data_values: dict | list[dict]) -> int:
    """Replace every ``switch(cond, a, b)`` whose ``cond`` depends on data alone and is the same
    for every element by ``a`` or ``b`` (broadcast to the switch's shape). ``data_values`` maps
    the graph's data inputs to their arrays, which must be the arrays every later call of the
    program passes; a list of such maps when calls pass different arrays (one per data shard:
    a condition folds when it is the same on all of them). Returns how many switches went; a
    condition that cannot be evaluated, or varies along the data, is left as it is."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    every = data_values if isinstance(data_values, list) else [data_values]
    data_inputs = set(every[0])
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
        per_call = [evaluate(*(values[v] for v in needed)) for values in every]
    except Exception:  # noqa: BLE001  (an optimisation only: the switch stays)
        return 0
    uniform = {}
    for i, cond in enumerate(conditions):
        value = np.concatenate([np.ravel(values[i]) for values in per_call])
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


def fold_data_indices(fgraph, data_values: dict) -> int:
    """Replace every ``nonzero`` of data alone by its value on ``data_values`` (as for
    :func:`fold_data_conditions`, the arrays every later call passes). Returns how many went.

    ``nonzero``'s output shape depends on its input's values, which JAX cannot trace: PyMC's
    ``ICAR`` takes the edge list of its adjacency matrix so, and PyTensor's constant folding
    hides that only while the matrix is a constant (below ``compile.DATA_MIN_ELEMENTS``
    elements; a 5 x 4 grid's 20 x 20 matrix is data). Evaluated once here, the indices are
    constants of the program and the rest of the graph translates."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from pytensor.tensor.basic import Nonzero

    data_inputs = set(data_values)
    nodes = [
        node
        for node in fgraph.toposort()
        if isinstance(node.op, Nonzero) and _data_only(fgraph, node.inputs[0], data_inputs)
    ]
    if not nodes:
        return 0
    outputs = [out for node in nodes for out in node.outputs]
    needed = [v for v in fgraph.inputs if v in data_inputs]
    evaluate = pytensor.function(
        needed, outputs, mode=Mode(linker="py", optimizer="fast_compile"), on_unused_input="ignore"
    )
    values = evaluate(*(data_values[v] for v in needed))
    for out, value in zip(outputs, values, strict=True):
        constant = pt.constant(np.asarray(value, dtype=out.type.dtype))
        fgraph.replace(out, constant, reason="fold_data_indices", import_missing=True)
    return len(nodes)
