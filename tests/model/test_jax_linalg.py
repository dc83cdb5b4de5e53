"""mpi_pymc.model.jax_linalg: PyTensor's ``Eigvalsh`` translated to JAX, value and gradient against
PyTensor's C backend (SciPy), and ``pm.CAR`` (whose log-density needs the generalized form)
against PyMC's own log-density (issue #37).

The gradients compared are those the project uses: JAX's autodiff of the translated graph on our
side, PyTensor's symbolic gradient (``EigvalshGrad``, or its pullback on pytensor 3) compiled to C
on the other. Both read each matrix from one triangle only, so the gradient of a non-symmetric
input lies on that triangle. At repeated eigenvalues only symmetric functions of the eigenvalues
are differentiable: the costs there are sums.
"""

from __future__ import annotations

import jax
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.fg import FunctionGraph
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.tensor.slinalg import Eigvalsh, eigvalsh

from mpi_pymc.model import jax_linalg, jax_ops
from mpi_pymc.model.compile import compile_model

jax.config.update("jax_enable_x64", True)

RNG = np.random.default_rng(37)


def _spd(n, scale=1.0):
    m = RNG.normal(size=(n, n))
    return scale * (m @ m.T / n + np.eye(n))


def _symmetric(n):
    m = RNG.normal(size=(n, n))
    return m + m.T


_NONSYMMETRIC = RNG.normal(size=(4, 4))
# (a, b): b=None is the plain problem. The edges: b the identity (pm.CAR's call), a diagonal b
# over six decades, a = 2 b (every eigenvalue 2, repeated), a the identity, a 1 x 1 problem,
# and inputs whose two triangles differ (only one is read).
PAIRS = {
    "general": (_symmetric(4), _spd(4)),
    "b_identity": (_symmetric(5), np.eye(5)),
    "b_diagonal_wide": (_symmetric(3), np.diag([1e-3, 1.0, 1e3])),
    "repeated": (2.0 * _spd(3), None),
    "a_identity": (np.eye(3), _spd(3)),
    "one_by_one": (np.array([[3.0]]), np.array([[2.0]])),
    "nonsymmetric": (_NONSYMMETRIC, _spd(4) + np.triu(RNG.normal(size=(4, 4)), 1)),
    "plain": (_symmetric(4), None),
    "plain_nonsymmetric": (_NONSYMMETRIC, None),
}
PAIRS["repeated"] = (2.0 * PAIRS["a_identity"][1], PAIRS["a_identity"][1])


def _cost(w):
    """A symmetric function of the eigenvalues (differentiable where they repeat)."""
    return (w**2).sum() + 0.5 * w.sum()


def _graphs(with_b: bool, lower: bool):
    """(inputs, eigenvalues, cost, the C reference's gradient of the cost). The plain form's
    reference is the generalized one with b = I: pytensor 2's Eigvalsh has no gradient of its
    own for b = None."""
    from pytensor.tensor.type_other import NoneConst

    a, b = pt.dmatrix("a"), pt.dmatrix("b")
    inputs = [a, b] if with_b else [a]
    w = (
        eigvalsh(a, b, lower=lower)
        if with_b
        else Eigvalsh(lower).make_node(a, NoneConst).outputs[0]
    )
    reference_w = eigvalsh(a, b if with_b else pt.eye(a.shape[0]), lower=lower)
    return inputs, w, _cost(w), pytensor.grad(_cost(reference_w), inputs)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_eigvalsh_value_and_gradient_match_pytensor_c(name, lower):
    import scipy.linalg

    jax_ops.register()
    a, b = PAIRS[name]
    values = [a] if b is None else [a, b]
    inputs, w, cost, grads = _graphs(b is not None, lower)
    expected_grads = pytensor.function(inputs, grads, mode="FAST_RUN")(*values)
    expected_w = scipy.linalg.eigvalsh(a, b, lower=lower)  # what PyTensor's C backend runs
    translated = jax_funcify(FunctionGraph(inputs, [w, cost], clone=True))
    got_w = translated(*values)[0]
    got_grads = jax.grad(lambda *x: translated(*x)[1], argnums=tuple(range(len(values))))(*values)
    np.testing.assert_allclose(got_w, expected_w, rtol=1e-10, atol=1e-12)
    for got, expected in zip(got_grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_eigvalsh_reads_one_triangle_as_scipy_does():
    import scipy.linalg

    a, b = PAIRS["nonsymmetric"]
    for lower in (True, False):
        np.testing.assert_allclose(
            jax_linalg.eigvalsh(a, b, lower=lower),
            scipy.linalg.eigvalsh(a, b, lower=lower),
            rtol=1e-12,
        )


def test_eigvalsh_of_a_b_that_is_not_positive_definite_is_nan():
    """SciPy raises LinAlgError; a log-density there is NaN, which NUTS rejects."""
    a = _symmetric(3)
    assert np.all(np.isnan(jax_linalg.eigvalsh(a, -np.eye(3))))


def test_eigvalsh_float32():
    a, b = PAIRS["general"]
    got = jax_linalg.eigvalsh(a.astype(np.float32), b.astype(np.float32))
    assert got.dtype == np.float32
    import scipy.linalg

    np.testing.assert_allclose(got, scipy.linalg.eigvalsh(a, b), rtol=1e-4, atol=1e-5)


def test_register_serves_only_the_forms_pytensor_gets_wrong():
    ours = jax_ops.register()
    assert jax_ops.register() == ours
    # The generalized form fails in every supported PyTensor; the plain one only in 2.x.
    assert jax_linalg._ours_for[2] and "Eigvalsh" in ours
    from pytensor.tensor.type_other import NoneConst

    node = Eigvalsh().make_node(pt.dmatrix("a"), NoneConst)
    translate = jax_funcify.dispatch(Eigvalsh)
    fn = translate(node.op, node=node)
    uses_ours = fn.__module__ == jax_linalg.__name__
    assert uses_ours == jax_linalg._ours_for[1]


def _car_model():
    """The issue's disease map: CAR over a 5 x 4 grid, Poisson counts with expected values."""
    rows, cols = 5, 4
    n = rows * cols
    w = np.zeros((n, n))
    for i in range(n):
        if (i + 1) % cols:
            w[i, i + 1] = w[i + 1, i] = 1
        if i + cols < n:
            w[i, i + cols] = w[i + cols, i] = 1
    rng = np.random.default_rng(5)
    expected = rng.uniform(5, 15, size=n)
    with pm.Model() as model:
        b0 = pm.Normal("b0", 0, 1)
        alpha = pm.Beta("alpha", 2, 2)
        tau = pm.Gamma("tau", 2, 2)
        phi = pm.CAR("phi", mu=np.zeros(n), W=w, alpha=alpha, tau=tau)
        pm.Poisson("y", expected * pm.math.exp(b0 + phi), observed=rng.poisson(expected))
    return model


def test_car_log_density_and_gradient_match_pymc():
    model = _car_model()
    compiled = compile_model(model)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    rng = np.random.default_rng(0)
    # The initial point, and alpha's logit far out on both sides (alpha near 0 and near 1).
    points = [compiled.initial_flat, *(rng.normal(0, 1.0, compiled.dimension) for _ in range(3))]
    for edge in (-8.0, 8.0):
        flat = rng.normal(0, 0.3, compiled.dimension)
        flat[compiled.value_names.index("alpha_logodds__")] = edge
        points.append(flat)
    for flat in points:
        got, grad = value_and_grad(flat, compiled.data)
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        np.testing.assert_allclose(float(got), logp(point), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), dlogp(point), rtol=1e-8, atol=1e-10)
