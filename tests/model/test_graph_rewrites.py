"""The log-density's own rewrites (``mpi_pymc.model.graph_rewrites``) change no value and apply.

Log-density and gradient of the compiled JAX program against PyMC's own compiled functions
(PyTensor's C/Python backend, no rewrite of ours) at points spread far enough that every
piece of the softplus (|eta| up to a few hundred) is used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from mpi_pymc.model.compile import compile_model


def _logistic(n=400, d=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4).astype("int8")
    with pm.Model() as model:
        X_data = pm.Data("X", X)
        alpha = pm.Normal("alpha", 0.0, 2.5)
        beta = pm.Normal("beta", 0.0, 1.0, shape=d)
        pm.Bernoulli("y", logit_p=alpha + X_data @ beta, observed=y)
    return model


def _binomial_logit(n=300, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    trials = rng.integers(1, 20, size=n)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        b = pm.HalfNormal("b", 1.0)
        pm.Binomial("k", n=trials, logit_p=a + b * x, observed=rng.binomial(trials, 0.3))
    return model


def _bernoulli_p(n=300, seed=3):
    """Bernoulli on the probability scale: ``log(p)`` and ``log1p(-p)`` branches."""
    rng = np.random.default_rng(seed)
    with pm.Model() as model:
        p = pm.Beta("p", 2.0, 2.0)
        pm.Bernoulli("y", p=p, observed=(rng.random(n) < 0.3).astype("int8"))
    return model


def _shared_branch(n=300, seed=4):
    """A softplus used both inside a switch and on its own: must not be lifted."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        eta = a * x
        pm.Potential("both", pt.switch(x > 0, pt.softplus(eta), pt.softplus(-eta)))
        pm.Potential("alone", -pt.sum(pt.softplus(eta)))
    return model


def _poisson_log(n=300, seed=5):
    """A count likelihood: its support check ``y >= 0`` holds for every observation."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        b = pm.Normal("b", 0.0, 0.5)
        pm.Poisson("k", mu=pm.math.exp(a + b * x), observed=rng.poisson(np.exp(0.3 + 0.2 * x)))
    return model


def _out_of_support(n=300, seed=6):
    """One observation outside the Bernoulli's support: the log-density is -inf everywhere."""
    model = _logistic(n=n, seed=seed)
    y = model.rvs_to_values[model["y"]]
    bad = np.asarray(y.data).copy()
    bad[7] = 2
    y.data = bad
    return model


def _censored_normal(seed=7):
    """Observations at both censoring bounds, the lower one 12 standard deviations out: PyMC's
    normal log-CDF and log-survival are piecewise, and JAX's gradient of the piece not taken
    there was NaN (``0 * inf``) before ``guard_switch_branches``."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([[-12.0, -12.0, 30.0], rng.normal(1.0, 1.0, 20)])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0)
        shift = pm.Normal("shift", 0.0, 1.0)
        pm.Censored("y", pm.Normal.dist(mu + shift, 1.0), lower=-12.0, upper=30.0, observed=y)
    return model


def _censored_weibull(seed=8):
    """Survival times censored at 3: PyMC's Weibull log-survival is ``log1mexp`` of its
    log-CDF, whose JAX gradient was NaN where the survival is small (``safe_log1mexp``)."""
    rng = np.random.default_rng(seed)
    t = np.minimum(2.0 * rng.weibull(1.5, 30), 3.0)
    with pm.Model() as model:
        alpha = pm.HalfNormal("alpha", 2.0)
        beta = pm.HalfNormal("beta", 2.0)
        pm.Censored("t", pm.Weibull.dist(alpha, beta), lower=None, upper=3.0, observed=t)
    return model


def _ordered_probit():
    """PyMC's ``log_diff_normal_cdf``: switch branches that read two variables (issue #37)."""
    with pm.Model() as model:
        eta = pm.Normal("eta", 0.0, 1.0)
        cut = pm.Normal(
            "cut", np.array([-1.0, 0.0, 1.0]), 1.0, transform=pm.distributions.transforms.ordered
        )
        pm.OrderedProbit("y", eta, cut, observed=np.array([0, 1, 1, 2, 3, 3, 2]))
    return model


def _icar():
    """``nonzero`` of a data matrix (the ICAR's edge list), folded on the data (issue #37)."""
    n = 20  # a 5 x 4 grid: the 400-element adjacency matrix is data, not a constant
    w = np.zeros((n, n))
    for i in range(n):
        if (i + 1) % 4:
            w[i, i + 1] = w[i + 1, i] = 1
        if i + 4 < n:
            w[i, i + 4] = w[i + 4, i] = 1
    rng = np.random.default_rng(4)
    with pm.Model() as model:
        phi = pm.ICAR("phi", W=w, sigma=pm.HalfNormal("sigma", 1.0))
        pm.Poisson("y", 10 * pm.math.exp(phi), observed=rng.poisson(10, size=n))
    return model


MODELS = {
    "icar": _icar,
    "censored_normal": _censored_normal,
    "censored_weibull": _censored_weibull,
    "logistic": _logistic,
    "poisson_log": _poisson_log,
    "binomial_logit": _binomial_logit,
    "bernoulli_p": _bernoulli_p,
    "shared_branch": _shared_branch,
}


def _points(model, count, scale, seed):
    rng = np.random.default_rng(seed)
    size = sum(int(np.prod(np.shape(v))) for v in model.initial_point().values())
    return [rng.normal(scale=scale, size=size) for _ in range(count)]


def _central_difference(logp, compiled, flat, step=1e-5):
    def at(x):
        return logp(dict(zip(compiled.value_names, compiled.unravel(x), strict=True)))

    out = np.empty_like(flat)
    for i in range(flat.size):
        delta = np.zeros_like(flat)
        delta[i] = step * max(1.0, abs(flat[i]))
        out[i] = (at(flat + delta) - at(flat - delta)) / (2 * delta[i])
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logdensity_and_gradient_match_pymc(name):
    model = MODELS[name]()
    compiled = compile_model(model, "float64")
    logp = model.compile_logp()
    dlogp = model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    # The initial point (zeros: eta = 0, a kink of max and |x|) and points at every scale.
    zero = [np.zeros_like(compiled.initial_flat)]
    for scale in (0.0, 0.1, 3.0, 30.0):
        for flat in zero if scale == 0.0 else _points(model, 3, scale, seed=int(scale * 10)):
            point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
            expected = logp(point)
            expected_grad = dlogp(point)
            value, grad = value_and_grad(jnp.asarray(flat), compiled.data)
            if not np.isfinite(expected):
                assert not np.isfinite(float(value))
                continue
            np.testing.assert_allclose(float(value), expected, rtol=1e-10, atol=1e-8)
            if np.all(np.isfinite(expected_grad)):
                np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-8, atol=1e-8)
            else:
                # PyMC's own gradient takes both branches of the switch and gives NaN far out;
                # the rewritten one does not: compare with central differences of PyMC's value.
                np.testing.assert_allclose(
                    np.asarray(grad), _central_difference(logp, compiled, flat), rtol=1e-5
                )


def _count(jaxpr, names):
    counts = dict.fromkeys(names, 0)

    def walk(inner):
        for eqn in inner.eqns:
            if eqn.primitive.name in counts:
                counts[eqn.primitive.name] += 1
            for param in eqn.params.values():
                sub = getattr(param, "jaxpr", None)
                if sub is not None:
                    walk(getattr(sub, "jaxpr", sub))

    walk(jaxpr.jaxpr)
    return counts


def test_logistic_likelihood_needs_one_exp_and_one_log1p_per_observation():
    """PyTensor's translation evaluates both branches of the Bernoulli's switch, each a
    four-piece softplus: 2 exp-s and 1 log1p each (6 and 2 in the jaxpr). The rewritten one
    takes the branch first and uses ``max(x, 0) + log1p(exp(min(x, -x)))``."""
    compiled = compile_model(_logistic(), "float64")
    jaxpr = jax.make_jaxpr(compiled.logdensity)(jnp.asarray(compiled.initial_flat), compiled.data)
    assert _count(jaxpr, ("exp", "log1p")) == {"exp": 1, "log1p": 1}


def test_float32_program_stays_float32():
    compiled = compile_model(_logistic(), "float32")
    flat = jnp.asarray(compiled.initial_flat, jnp.float32)
    value, grad = jax.value_and_grad(compiled.logdensity)(flat, compiled.data)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.float32
    reference = compile_model(_logistic(), "float64")
    jax.config.update("jax_enable_x64", True)
    expected = reference.logdensity(jnp.asarray(reference.initial_flat), reference.data)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)


def _data_only_conditions(fgraph, values):
    """Each switch on the data alone in ``fgraph``: whether its condition is the same for
    every element."""
    from pytensor.scalar import basic as ps
    from pytensor.tensor.elemwise import Elemwise

    from mpi_pymc.model.graph_rewrites import _data_only

    placeholders = list(values)
    found = []
    for node in fgraph.apply_nodes:
        if not (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Switch)):
            continue
        cond = node.inputs[0]
        if _data_only(fgraph, cond, set(placeholders)):
            value = np.asarray(
                pytensor.function(placeholders, cond, on_unused_input="ignore")(*values.values())
            )
            found.append(bool(value.all() or not value.any()))
    return found


@pytest.mark.parametrize("name", ["logistic", "poisson_log", "shared_branch"])
def test_switches_on_the_data_alone_are_folded_when_uniform(name):
    """PyMC's support check on the observed values (``y >= 0``...) holds for every observation:
    it goes. A condition that varies along the data (the Bernoulli's sign switch after our
    lift, the potential's ``x > 0``) stays."""
    from mpi_pymc.model.compile import _value_of, data_inputs, jax_graph
    from mpi_pymc.model.graph_rewrites import fold_data_conditions

    model = MODELS[name]()
    logp = model.logp()
    data_vars = data_inputs([logp])
    fgraph = jax_graph(list(model.value_vars), [logp], data_vars)
    placeholders = fgraph.inputs[len(model.value_vars) :]
    values = {ph: _value_of(v) for ph, v in zip(placeholders, data_vars, strict=True)}
    before = _data_only_conditions(fgraph, values)
    folded = fold_data_conditions(fgraph, values)
    after = _data_only_conditions(fgraph, values)
    assert folded == sum(before) and not any(after)
    assert len(after) == len(before) - folded
    if name != "shared_branch":
        assert folded >= 1  # the likelihood's support check


def test_data_outside_the_support_still_gives_minus_infinity():
    model = _out_of_support()
    compiled = compile_model(model, "float64")
    assert not np.isfinite(model.compile_logp()(model.initial_point()))
    value = jax.jit(compiled.logdensity)(jnp.asarray(compiled.initial_flat), compiled.data)
    assert float(value) == -np.inf


def test_guard_walks_a_branch_deeper_than_pythons_stack():
    # An elementwise chain below the switch deeper than Python's stack (an unrolled recursion
    # gives such graphs; here 800 ops under a limit of 400 frames, to stay quick): the walk that
    # finds which branches depend on z only elementwise must not recurse.
    import sys

    from pytensor.graph.fg import FunctionGraph

    from mpi_pymc.model.graph_rewrites import guard_switch_branches

    z = pt.vector("z")
    deep = z
    for _ in range(400):
        deep = deep * 1.0001 + 0.001
    out = pt.switch(pt.lt(z, pt.constant(np.zeros(1))), pt.log1p(-pt.exp(deep)), deep)
    graph = FunctionGraph([z], [out], clone=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        guarded = guard_switch_branches(graph)
    finally:
        sys.setrecursionlimit(limit)
    assert guarded == 1  # both branches depend on z elementwise


def test_ordered_probit_gradient_is_pymcs_at_moderate_points():
    """The guard leaves ``log_diff_normal_cdf``'s two-variable branches alone: the gradient was
    NaN at the initial point. Far out (|z| ~ 30) PyTensor's JAX program is NaN with or without
    our rewrites, so only moderate points."""
    model = _ordered_probit()
    compiled = compile_model(model, "float64")
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    for flat in [compiled.initial_flat, *_points(model, 4, 1.0, seed=37)]:
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        value, grad = value_and_grad(jnp.asarray(flat), compiled.data)
        np.testing.assert_allclose(float(value), logp(point), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), dlogp(point), rtol=1e-8, atol=1e-8)


def _gp_marginal(n=8):
    """The catalogue survey's ``gp.Marginal``: one input column, ExpQuad."""
    rng = np.random.default_rng(20261207)
    x = np.linspace(0.0, 5.0, n)[:, None]
    with pm.Model() as model:
        ls = pm.Gamma("ls", 4.0, 4.0)
        eta = pm.HalfNormal("eta", 1.0)
        gp = pm.gp.Marginal(cov_func=eta**2 * pm.gp.cov.ExpQuad(1, ls=ls))
        gp.marginal_likelihood("y", X=x, y=np.sin(x[:, 0]) + 0.1 * rng.normal(size=n),
                               sigma=pm.HalfNormal("sigma", 1.0))  # fmt: skip
    return model


def _gp_latent_2d(n=10):
    """Two input columns (the ``sum(a**2, 1)`` form), Matern52, a repeated input row (equal
    rows off the diagonal), Poisson counts."""
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 3.0, size=(n, 2))
    x[-1] = x[0]
    with pm.Model() as model:
        ls = pm.Gamma("ls", 4.0, 4.0, shape=2)
        eta = pm.HalfNormal("eta", 1.0)
        f = pm.gp.Latent(cov_func=eta**2 * pm.gp.cov.Matern52(2, ls=ls)).prior("f", X=x)
        pm.Poisson("y", pm.math.exp(f), observed=rng.poisson(2.0, size=n))
    return model


@pytest.mark.parametrize("build", [_gp_marginal, _gp_latent_2d], ids=["marginal", "latent_2d"])
def test_gp_square_distances_are_exact_and_the_gradient_is_pymcs(build):
    """PyMC's ``-2 a b^T + |a|^2 + |b|^2``, clipped at 0, becomes ``sum((a_i - b_j)**2)``: no
    clip is left, and the jitted gradient is PyMC's at jittered points (before the rewrite, the
    lengthscale's was 13.4 off on the 8-point marginal model: XLA's rounding put the diagonal
    on both sides of the clip's 0; ``graph_rewrites.exact_square_distances``)."""
    from pytensor.scalar import basic as ps

    from mpi_pymc.model.compile import data_inputs, program_graph

    model = build()
    logp = model.logp()
    fgraph = program_graph(list(model.value_vars), [logp], data_inputs([logp]), float_dtype=float)
    clips = [n for n in fgraph.apply_nodes if isinstance(getattr(n.op, "scalar_op", None), ps.Clip)]
    assert not clips
    compiled = compile_model(model, "float64")
    logp_c, dlogp_c = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    rng = np.random.default_rng(7)
    for _ in range(4):
        flat = compiled.initial_flat + rng.uniform(-0.5, 0.5, compiled.dimension)
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        value, grad = value_and_grad(jnp.asarray(flat), compiled.data)
        expected_grad = dlogp_c(point)
        np.testing.assert_allclose(float(value), logp_c(point), rtol=1e-10)
        scale = max(1.0, float(np.max(np.abs(expected_grad))))
        np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=0, atol=1e-8 * scale)
