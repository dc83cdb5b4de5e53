"""mpi_pymc.model.jax_ops: JAX erfcx and erfcinv against SciPy, and Censored/Truncated Normal models
translated through them against PyMC's own log-density (issue #16); JAX ive against PyTensor's
own and an exact series, and pm.gp.HSGPPeriodic through it against PyMC (issue #37); betainc's
derivatives against PyTensor's, a quadrature and closed forms, and pm.HurdleNegativeBinomial
through it against PyMC (issue #37).

Values are checked over the whole domain, large and tiny arguments included; results that
would be subnormal are left out (XLA on CPU flushes subnormals to zero).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.special as sp

from mpi_pymc.model import jax_ops
from mpi_pymc.model.compile import compile_model

jax.config.update("jax_enable_x64", True)

RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def assert_close(actual, expected, dtype) -> None:
    """Relative agreement; infinities and NaNs must match exactly. ``expected`` is float64 and
    is first rounded to ``dtype`` (so that what overflows there is inf)."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    with np.errstate(over="ignore"):
        expected = np.asarray(expected, np.float64).astype(dtype)
    keep = ~(np.abs(expected) < np.finfo(dtype).tiny) | (expected == 0)
    np.testing.assert_allclose(actual[keep], expected[keep], rtol=RTOL[dtype], atol=0)


def erfcx_grid(dtype) -> np.ndarray:
    big = 300 if dtype == np.float64 else 37
    return np.concatenate(
        [
            [-np.inf, -1e300 if dtype == np.float64 else -1e30, -30.0, -26.7, -26.6, -9.5],
            -np.logspace(-300 if dtype == np.float64 else -37, np.log10(26.6), 1500),
            [0.0],
            np.logspace(-300 if dtype == np.float64 else -37, big, 3000),
            np.linspace(0.0, 6.0, 1201),  # around the switch to the continued fraction
            [np.inf, np.nan],
        ]
    ).astype(dtype)


def erfcx_slope(x: np.ndarray) -> np.ndarray:
    """d/dx erfcx = 2x erfcx(x) - 2/sqrt(pi). That cancels to ~ -1/(sqrt(pi) x^2) for large x,
    losing ~x^2 ulps: beyond 30 use its asymptotic series instead."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        direct = 2 * x * sp.erfcx(x) - 2 / math.sqrt(math.pi)
        w = 1 / (2 * x * x)
        series = sum((-1) ** n * sp.factorial2(2 * n + 1) * w**n for n in range(11))
        asymptotic = -series / (math.sqrt(math.pi) * x * x)
    return np.where(x > 30, asymptotic, direct)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfcx_matches_scipy(dtype) -> None:
    x = erfcx_grid(dtype)
    assert_close(jax.jit(jax_ops.erfcx)(x), sp.erfcx(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfcx_gradient_is_the_analytic_derivative(dtype) -> None:
    x = erfcx_grid(dtype)
    x = x[np.isfinite(x)]
    slope = jax.jit(jax.vmap(jax.grad(jax_ops.erfcx)))(x)
    assert_close(slope, erfcx_slope(x), dtype)


def test_erfcx_of_negative_x_is_exact_to_a_few_ulps() -> None:
    """erfcx(x) = 2 exp(x^2) - erfcx(-x), with exp(x^2) in 40-digit decimal arithmetic. SciPy
    itself is off by up to 6e-14 there (it rounds x*x before exp), so the test above cannot
    see this."""
    x = -np.linspace(1.0, 26.6, 300)
    with localcontext() as context:
        context.prec = 40
        exact = [2 * (Decimal(v) ** 2).exp() - Decimal(sp.erfcx(-v)) for v in x]
    np.testing.assert_allclose(jax_ops.erfcx(x), np.array(exact, dtype=float), rtol=2e-15)


def test_erfcx_limits() -> None:
    x = np.array([-40.0, -26.7, 1e8, 1e200, np.inf, -np.inf])
    y = np.asarray(jax_ops.erfcx(x))
    assert np.all(np.isinf(y[:2])) and y[-1] == np.inf and y[-2] == 0.0
    np.testing.assert_allclose(y[2:4], 1 / (math.sqrt(math.pi) * x[2:4]), rtol=1e-15)
    # jnp.where-safe: no NaN leaks from the branch not taken, even where values overflow
    assert not np.any(np.isnan(jax.vmap(jax.grad(jax_ops.erfcx))(x[:4])))


def erfcinv_grid(dtype) -> np.ndarray:
    tiny = -300 if dtype == np.float64 else -37
    near_two = -16 if dtype == np.float64 else -7
    return np.concatenate(
        [
            [0.0, 1e-300 if dtype == np.float64 else 1e-37, 1.0, 2.0],
            np.logspace(tiny, 0, 2000),
            np.linspace(0.0, 2.0, 2001),
            2 - np.logspace(near_two, 0, 500),
            [-0.5, 2.5, np.nan],
        ]
    ).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfcinv_matches_scipy(dtype) -> None:
    y = erfcinv_grid(dtype)
    assert_close(jax.jit(jax_ops.erfcinv)(y), sp.erfcinv(y.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfcinv_gradient_is_the_analytic_derivative(dtype) -> None:
    y = erfcinv_grid(dtype)
    y = y[(y > 0) & (y < 2)]
    slope = jax.jit(jax.vmap(jax.grad(jax_ops.erfcinv)))(y)
    # -sqrt(pi)/2 exp(z^2), written as exp(z^2) = erfcx(|z|)/t, t = min(y, 2 - y): the plain
    # form turns SciPy's last-bit error in z into ~1e-13 relative near y = 1e-300.
    t = np.minimum(y, 2 - y).astype(np.float64)
    expected = -0.5 * math.sqrt(math.pi) * sp.erfcx(sp.erfcinv(t)) / t
    assert_close(slope, expected, dtype)
    moderate = (y > 1e-3) & (y < 2 - 1e-3)
    z = sp.erfcinv(y[moderate].astype(np.float64))
    assert_close(slope[moderate], -0.5 * math.sqrt(math.pi) * np.exp(z * z), dtype)


def test_erfcinv_edges() -> None:
    y = np.array([0.0, 2.0, -0.1, 2.1])
    np.testing.assert_array_equal(jax_ops.erfcinv(y)[:2], [np.inf, -np.inf])
    assert np.all(np.isnan(jax_ops.erfcinv(y)[2:]))
    np.testing.assert_array_equal(jax.vmap(jax.grad(jax_ops.erfcinv))(y[:2]), [-np.inf] * 2)


def test_other_input_dtypes() -> None:
    assert jax_ops.erfcx(jnp.array([1, 2])).dtype == jnp.float64
    half = jax_ops.erfcx(jnp.array([0.5, 4.0], jnp.bfloat16))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float64), sp.erfcx([0.5, 4.0]), rtol=1e-2)
    assert jax_ops.erfcinv(jnp.array([1e-20], jnp.float16)).dtype == jnp.float16


def test_register_keeps_working_translations_and_is_idempotent() -> None:
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.scalar import math as scalar_math

    ours = jax_ops.register()
    known = {"Erfcx", "Erfcinv", "Ive", "BetaInc", "Eigvalsh"}
    assert jax_ops.register() == ours and set(ours) <= known
    for name in ("Erfcx", "Erfcinv", "Ive", "BetaInc"):
        translate = jax_funcify.dispatch(getattr(scalar_math, name))
        assert (translate.__module__ == jax_ops.__name__) == (name in ours)


@pytest.mark.parametrize("name", ["erfcx", "erfcinv"])
def test_pytensor_translates_after_register(name: str) -> None:
    jax_ops.register()
    x = pt.dvector("x")
    f = pytensor.function([x], getattr(pt, name)(x), mode="JAX")
    values = np.array([1e-300, 0.3, 1.0, 1.7, 30.0, 1e10])
    values = values[values < 2] if name == "erfcinv" else values
    np.testing.assert_allclose(f(values), getattr(sp, name)(values), rtol=1e-12)


def censored_normal_model() -> pm.Model:
    data = np.array([-3.0, -3.0, -2.0, -0.4, 0.0, 0.7, 1.5, 3.0, 3.0])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Censored("y", pm.Normal.dist(mu, sigma), lower=-3.0, upper=3.0, observed=data)
    return model


def truncated_normal_model() -> pm.Model:
    data = np.array([-0.9, -0.5, 0.0, 0.3, 1.1, 1.9])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Truncated("y", pm.Normal.dist(mu, sigma), lower=-1.0, upper=2.0, observed=data)
    return model


# (mu, log sigma): the bounds sit from the centre to 7.8 sigma out, so PyMC's normal logcdf
# calls erfcx on both sides of the switch to the continued fraction (argument 3). Not beyond
# 8.3 sigma: there the branch of PyMC's logcdf that its switch does not take, log1p(-erfc/2),
# is log1p(-1), and its JAX gradient is NaN whatever erfcx is (on the 3.12 stack too).
POINTS = [(0.0, 0.0), (0.5, -0.7), (-1.0, 0.4), (1.0, -0.6), (-1.5, -0.5), (1.7, -0.5), (1.2, 1.0)]


@pytest.mark.parametrize("make_model", [censored_normal_model, truncated_normal_model])
def test_censored_and_truncated_normal_match_pymc(make_model) -> None:
    model = make_model()
    compiled = compile_model(model)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    assert compiled.value_names == ["mu", "sigma_log__"]
    for point in POINTS:
        flat = np.array(point)
        got, grad = value_and_grad(flat, compiled.data)
        as_dict = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        np.testing.assert_allclose(float(got), logp(as_dict), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), dlogp(as_dict), rtol=1e-10, atol=1e-12)


# --- ive (issue #37) ---------------------------------------------------------------------------
IVE_ORDERS = np.array([*range(30), 50, 100, 200, 500, 1000], dtype=float)
IVE_X = np.concatenate(
    [
        [0.0, 1e-300, 1e-100, 1e-20],
        np.logspace(-8, 7, 301),
        np.linspace(35.0, 45.0, 41),  # around the switch to Hankel's series at 40
        [5e3 - 1, 5e3, 5e3 + 1, 1.25e5, 5e5 - 1, 5e5, 5e5 + 1],  # v^2/2 for v = 100, 500, 1000
        [1e12, 1e300],
    ]
)


def pytensor_ive_and_slope():
    """PyTensor's own ive and its gradient in x, compiled in its default mode (Ive has no C
    code: SciPy's ive, through the op's perform)."""
    v, x = pt.dvector("v"), pt.dvector("x")
    y = pt.ive(v, x)
    return pytensor.function([v, x], [y, pytensor.grad(y.sum(), x)])


def ive_and_slope(v, x):
    return jax.jit(jax.vmap(jax.value_and_grad(jax_ops.ive, argnums=1)))(v, x)


def test_ive_matches_pytensor() -> None:
    """Over orders 0-1000 and x from 0 to 1e300. Values to 5e-13: ours is a product of v ratios
    (about v/4 ulps at v = 1000, 2.4e-13 measured), SciPy's own error reaches 3e-14 at small x
    (see the exact test below). PyTensor's gradient (ive(v-1) - 2 ive(v) + ive(v+1)) / 2 cancels
    where x >> 1 (to ~ive/(2x)): its own error is SciPy's relative error, taken as 2e-13, times
    the terms that cancel, and ours is allowed that plus 1e-12 relative."""
    v, x = (a.ravel() for a in np.meshgrid(IVE_ORDERS, IVE_X, indexing="ij"))
    expected, expected_slope = pytensor_ive_and_slope()(v, x)
    got, slope = (np.asarray(a) for a in ive_and_slope(v, x))
    # Results near the bottom of the range are left out: XLA on CPU flushes subnormals to
    # zero, and SciPy returns 0 for some results of 1e-305.
    keep = (expected > 1e-300) | (x == 0)
    np.testing.assert_allclose(got[keep], expected[keep], rtol=5e-13, atol=0)
    cancelling = (sp.ive(v - 1, x) + 2 * sp.ive(v, x) + sp.ive(v + 1, x)) / 2
    keep &= np.abs(expected_slope) > np.finfo(float).tiny
    error = np.abs(slope - expected_slope)[keep]
    allowed = 1e-12 * np.abs(expected_slope[keep]) + 2e-13 * cancelling[keep]
    assert np.all(error <= allowed), np.max(error / allowed)


def exact_ive_and_slope(v: int, x: float) -> tuple[float, float]:
    """exp(-x) I_v(x) and its x-derivative from the power series in 60-digit decimals:
    I_v = sum_j (x/2)^(v+2j) / (j! (v+j)!), x I_v' = sum_j (v+2j) (x/2)^(v+2j) / (j! (v+j)!)."""
    with localcontext() as context:
        context.prec = 60
        big_x = Decimal(x)
        quarter_x2 = (big_x / 2) ** 2
        term = (big_x / 2) ** v / math.factorial(v)
        total = weighted = Decimal(0)
        j = 0
        while j <= x or term >= total * Decimal(10) ** -40:
            total += term
            weighted += term * (v + 2 * j)
            j += 1
            term = term * quarter_x2 / (j * (v + j))
        scale = (-big_x).exp()
        return float(total * scale), float((weighted / big_x - total) * scale)


def test_ive_matches_the_exact_series() -> None:
    """Tighter than SciPy allows: values to 4e-15 (a few ulps: ratios in positive arithmetic,
    i0e's own error) where SciPy is off by up to 3e-14 (ive(2, 1e-100)); slopes to 5e-13 (ours
    is ive (v/x + I_{v+1}/I_v - 1), which cancels to ~1/(2x) for x >> v: 2.4e-13 measured at
    v = 100, x = 3000)."""
    orders = [0, 1, 2, 3, 7, 30, 100]
    xs = [1e-200, 1e-30, 1e-5, 0.01, 0.3, 1.0, 2.5, 7.0, 20.0, 39.9, 40.0, 45.0, 80.0, 300.0, 3e3]
    pairs = [(v, x) for v in orders for x in xs]
    exact = np.array([exact_ive_and_slope(v, x) for v, x in pairs])
    got, slope = ive_and_slope(*(np.array(a, float) for a in zip(*pairs, strict=True)))
    keep = exact[:, 0] > np.finfo(float).tiny
    np.testing.assert_allclose(np.asarray(got)[keep], exact[keep, 0], rtol=4e-15, atol=0)
    np.testing.assert_allclose(np.asarray(slope)[keep], exact[keep, 1], rtol=5e-13, atol=0)


def test_ive_edges() -> None:
    """x = 0 (1 for v = 0, else 0; PyTensor's slope there, with its sign(0) = -1: 1 for v = 0,
    1/2 for |v| = 1, else 0), negative x
    and orders (ive(n, -x) = (-1)^n ive(n, x), ive(-n, x) = ive(n, x)), infinite x (0, the
    limit), and NaN for NaN x or an order that is not an integer."""
    v = np.array([0.0, 1.0, 2.0, -1.0, 3.0, -3.0, 2.0, 0.5, 2.0])
    x = np.array([0.0, 0.0, 0.0, 0.0, -2.5, 2.5, np.inf, 1.0, np.nan])
    got, slope = (np.asarray(a) for a in ive_and_slope(v, x))
    np.testing.assert_allclose(got[:6], sp.ive(v[:6], x[:6]), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(slope[:4], [1.0, 0.5, 0.0, 0.5])
    v, x = v[4:6], x[4:6]
    pytensor_slope = (sp.ive(v - 1, x) - 2 * np.sign(x) * sp.ive(v, x) + sp.ive(v + 1, x)) / 2
    np.testing.assert_allclose(slope[4:6], pytensor_slope, rtol=1e-13)
    assert got[6] == 0.0 and slope[6] == 0.0
    assert np.all(np.isnan(got[7:])) and np.all(np.isnan(slope[7:]))


def test_ive_refuses_a_gradient_in_its_order() -> None:
    with pytest.raises(NotImplementedError, match="order"):
        jax.grad(jax_ops.ive)(2.0, 1.5)


def test_ive_translation_refuses_a_constant_order_that_is_not_an_integer() -> None:
    jax_ops.register()
    x = pt.dvector("x")
    with pytest.raises(NotImplementedError, match="integer orders"):
        pytensor.function([x], pt.ive(pt.as_tensor([0.0, 1.5]), x), mode="JAX")


def hsgp_periodic_model() -> pm.Model:
    x = np.linspace(0, 5, 12)[:, None]
    y = np.sin(2 * np.pi * x[:, 0] / 3.0) + 0.1 * np.random.default_rng(3).normal(size=12)
    with pm.Model() as model:
        ls = pm.Gamma("ls", 4, 4)
        cov = pm.gp.cov.Periodic(1, period=3.0, ls=ls)
        gp = pm.gp.HSGPPeriodic(m=25, scale=pm.HalfNormal("scale", 1.0), cov_func=cov)
        pm.Normal("y", gp.prior("f", X=x), 0.2, observed=y)
    return model


def test_hsgp_periodic_matches_pymc() -> None:
    """Orders 0-24 of ive at 1/ls^2 from 1e-2 (ls = 10) to 400 (ls = 0.05): both regimes."""
    model = hsgp_periodic_model()
    compiled = compile_model(model)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    rng = np.random.default_rng(5)
    assert compiled.value_names[0] == "ls_log__"
    for log_ls in [np.log(10.0), 0.0, -1.0, np.log(0.05)]:
        flat = compiled.initial_flat + 0.3 * rng.normal(size=compiled.dimension)
        flat[0] = log_ls
        got, grad = value_and_grad(flat, compiled.data)
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        np.testing.assert_allclose(float(got), logp(point), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), dlogp(point), rtol=1e-9, atol=1e-9)


# --- betainc (issue #37) -----------------------------------------------------------------------
BETAINC_SHAPES = [0.1, 0.5, 1.0, 2.5, 10.0, 100.0, 1000.0]


def betainc_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of shapes, x from 1e-300 to 1 - 1e-10: near 0 and 1, at the mean a/(a + b)
    and 1e-3 of the way to either side, where the fraction converges slowest."""
    rows = []
    for a in BETAINC_SHAPES:
        for b in BETAINC_SHAPES:
            m = a / (a + b)
            near = [0.5 * m, m * (1 - 1e-3), m, m + 1e-3 * (1 - m), m + 0.5 * (1 - m)]
            for x in [1e-300, 1e-10, 1e-3, 0.1, *near, 0.5, 0.9, 0.999, 1 - 1e-10]:
                rows.append((a, b, x))
    return tuple(np.array(column) for column in zip(*rows, strict=True))


def log_terms(a, b, x) -> np.ndarray:
    """The size of the terms that make up log of x^a (1-x)^b / B(a, b): a float64 result built
    on it cannot be closer than about eps times this, relative (1e4 at a = 1000, b = 0.1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = [a * np.log(x), b * np.log1p(-x), sp.gammaln(a), sp.gammaln(b), sp.gammaln(a + b)]
    return 1.0 + sum(np.nan_to_num(np.abs(t)) for t in terms)


def quadrature_slopes(a: float, b: float, x: float) -> tuple[float, float]:
    """dI/da and dI/db by quadrature of the Beta(a, b) density f, independent of both PyTensor's
    continued fraction and ours: dI/da = int_0^x f(t) log t dt - I (psi(a) - psi(a + b)), dI/db
    alike with log(1 - t) and psi(b). Taken over the tail of less mass (the upper tail's
    integral, with 1 - I, has the opposite sign), so that the two terms do not cancel where I is
    near 1, and from the side x <= 1/2 (I_x(a, b) = 1 - I_(1-x)(b, a)). QUADPACK's algebraic
    weights take the endpoint singularity of a shape below 1."""
    from scipy import integrate

    if x > 0.5:
        slope_b, slope_a = quadrature_slopes(b, a, 1 - x)
        return -slope_a, -slope_b
    log_beta = sp.betaln(a, b)
    lower = sp.betainc(a, b, x) <= 0.5
    mass = sp.betainc(a, b, x) if lower else -sp.betaincc(a, b, x)
    options = {"epsabs": 0.0, "epsrel": 2e-14, "limit": 500}

    def density(t, power_t, power_1mt):  # t^power_t (1-t)^power_1mt / B(a, b), 0^0 = 1
        if (t <= 0 and power_t) or (t >= 1 and power_1mt):
            return 0.0
        log_t = power_t * math.log(t) if power_t else 0.0
        log_1mt = power_1mt * math.log1p(-t) if power_1mt else 0.0
        return math.exp(log_t + log_1mt - log_beta)

    if lower and a < 1:  # t = x u, weight u^(a-1) (log u) on [0, 1], whatever the scale of x
        weight = {"wvar": (a - 1, 0), "a": 0.0, "b": 1.0}
        scale = math.exp(a * math.log(x))
        plain, logged = (
            integrate.quad(lambda u: density(x * u, 0, b - 1), weight=w, **weight, **options)[0]
            for w in ("alg", "alg-loga")
        )
        integral_a = scale * (math.log(x) * plain + logged)
        integral_b = (
            scale
            * integrate.quad(
                lambda u: density(x * u, 0, b - 1) * math.log1p(-x * u),
                weight="alg",
                **weight,
                **options,
            )[0]
        )
    elif not lower and b < 1:  # weight (1-t)^(b-1) (log(1 - t))
        weight = {"wvar": (0, b - 1), "a": x, "b": 1.0}
        integral_a = integrate.quad(
            lambda t: density(t, a - 1, 0) * math.log(t), weight="alg", **weight, **options
        )[0]
        integral_b = integrate.quad(
            lambda t: density(t, a - 1, 0), weight="alg-logb", **weight, **options
        )[0]
    else:
        low, high = (0.0, x) if lower else (x, 1.0)
        mode = (a - 1) / (a + b - 2) if a + b > 2 else 0.0
        spread = 3 * math.sqrt(a * b / (a + b) ** 3)
        points = [p for p in (mode - spread, mode, mode + spread) if low < p < high] or None
        integral_a = integrate.quad(
            lambda t: density(t, a - 1, b - 1) * math.log(t) if t > 0 else 0.0,
            low,
            high,
            points=points,
            **options,
        )[0]
        integral_b = integrate.quad(
            lambda t: density(t, a - 1, b - 1) * math.log1p(-t) if t < 1 else 0.0,
            low,
            high,
            points=points,
            **options,
        )[0]
    sign = 1.0 if lower else -1.0
    return (
        sign * integral_a - mass * (sp.digamma(a) - sp.digamma(a + b)),
        sign * integral_b - mass * (sp.digamma(b) - sp.digamma(a + b)),
    )


def pytensor_betainc_and_slopes():
    """PyTensor's own betainc and its gradient, compiled in its default mode (C code: Cephes'
    incbet, and the gradient's continued fraction as a ScalarLoop)."""
    a, b, x = pt.dvector("a"), pt.dvector("b"), pt.dvector("x")
    y = pt.betainc(a, b, x)
    return pytensor.function([a, b, x], [y, *pytensor.grad(y.sum(), [a, b, x])])


def betainc_and_slopes(a, b, x):
    value_and_grad = jax.value_and_grad(jax_ops.betainc, argnums=(0, 1, 2))
    value, slopes = jax.jit(jax.vmap(value_and_grad))(a, b, x)
    return np.asarray(value), *(np.asarray(s) for s in slopes)


EPS = np.finfo(np.float64).eps


def test_betainc_value_is_jaxs_and_matches_pytensor() -> None:
    """Ours changes the derivatives only: the value is JAX's betainc, bit for bit. That and
    PyTensor's (Cephes) agree to 1e-10 relative: both are within 5e-11 of SciPy's (Boost) over
    the grid (JAX 1.4e-11, PyTensor 4.8e-11 at a = 1000, b = 0.1, x = 0.9999, measured)."""
    a, b, x = betainc_grid()
    value = betainc_and_slopes(a, b, x)[0]
    np.testing.assert_array_equal(value, np.asarray(jax.scipy.special.betainc(a, b, x)))
    expected = pytensor_betainc_and_slopes()(a, b, x)[0]
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-300)


def test_betainc_slopes_match_quadrature() -> None:
    """dI/da and dI/db against an independent quadrature over the grid, shapes 0.1 to 1000 and x
    from 1e-300 to 1 - 1e-10, the mean and either side of it included. Allowed: 32 eps times
    the size of the terms of log K (``log_terms``; K = x^a (1-x)^b / (a B(a, b)) is computed in
    logs, and log Gamma(a + b) alone is 5,900 at a + b = 1000) plus 1e-13 for the quadrature;
    measured: at most 10.4 eps times it, 1.9e-11 relative at a = 1000, b = 0.1, x = 0.999.
    Where the exact value is below 1e-290 (x^a underflows) ours is as small."""
    a, b, x = betainc_grid()
    _, slope_a, slope_b, _ = betainc_and_slopes(a, b, x)
    reference = np.array([quadrature_slopes(*row) for row in zip(a, b, x, strict=True)])
    allowed = 1e-13 + 32 * EPS * log_terms(a, b, x)
    for got, exact in [(slope_a, reference[:, 0]), (slope_b, reference[:, 1])]:
        normal = np.abs(exact) > 1e-290
        assert np.sum(normal) > 400
        error = np.abs(got - exact)[normal] / np.abs(exact[normal])
        assert np.all(error <= allowed[normal]), np.max(error / allowed[normal])
        assert np.all(np.abs(got[~normal]) <= 1e-280)


def test_betainc_slopes_match_pytensor() -> None:
    """Against PyTensor's own gradient (C backend): its continued fraction stops when the
    relative change falls below 1e-12, which can be far from converged where the fraction
    converges slowly (1.3e-4 off the quadrature at a = 100, b = 0.1, x = 0.998), and it gives
    NaN past its 200-step cap. So: wherever PyTensor's is finite, ours is no further from it
    than 1e-10 plus PyTensor's own distance from the quadrature (relative), and agrees with it
    to 1e-9 on at least 95% of the grid (98% measured); where PyTensor's is NaN (4 points of
    the grid: a = 0.1, b = 100, x = 1e-3; a = 100, b = 0.1, x = 0.999 and its mean; a = 1000,
    b = 0.1 at its mean) ours is finite and matches the quadrature (previous test). The slope
    in x is the same closed form: 8 eps times ``log_terms`` (2.9 eps measured)."""
    a, b, x = betainc_grid()
    _, *ours = betainc_and_slopes(a, b, x)
    _, *theirs = pytensor_betainc_and_slopes()(a, b, x)
    reference = np.array([quadrature_slopes(*row) for row in zip(a, b, x, strict=True)])
    for j in range(2):
        got, expected, exact = ours[j], theirs[j], reference[:, j]
        normal = (np.abs(exact) > 1e-290) & ~np.isnan(expected)
        distance = np.abs(got - expected)[normal]
        assert np.all(distance <= 1e-10 * np.abs(exact[normal]) + np.abs(expected - exact)[normal])
        assert np.mean(distance <= 1e-9 * np.abs(exact[normal])) >= 0.95
        no_result = np.isnan(expected)
        assert 0 < np.sum(no_result) <= 8
        assert np.all(np.isfinite(got[no_result]))
    normal = np.abs(theirs[2]) > 1e-290
    error = np.abs(ours[2] - theirs[2])[normal] / theirs[2][normal]
    assert np.all(error <= 8 * EPS * log_terms(a, b, x)[normal])


def test_betainc_slopes_are_exact_where_a_or_b_is_one() -> None:
    """I_x(a, 1) = x^a, so dI/da = x^a log x; I_x(1, b) = 1 - (1-x)^b, so dI/db = -(1-x)^b
    log(1-x). The other shape from 0.01 to 1e4; to 16 eps times ``log_terms`` (2.2e-11
    relative at 1e4 measured, log Gamma(1e4) being 8.2e4)."""
    shapes = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 7.5, 30.0, 100.0, 1000.0, 1e4])
    xs = np.array([1e-8, 1e-3, 0.05, 0.3, 0.5, 0.7, 0.95, 0.999, 1 - 1e-8])
    shape, x = (m.ravel() for m in np.meshgrid(shapes, xs))
    one = np.ones_like(shape)
    cases = [
        ((shape, one, x), 1, x**shape * np.log(x)),
        ((one, shape, x), 2, -((1 - x) ** shape) * np.log1p(-x)),
    ]
    for args, j, exact in cases:
        got = betainc_and_slopes(*args)[j]
        normal = np.abs(exact) > 1e-290
        error = np.abs(got - exact)[normal] / np.abs(exact[normal])
        assert np.all(error <= 16 * EPS * log_terms(*args)[normal])


def test_betainc_edges() -> None:
    """x = 0 and x = 1: I is 0 or 1 whatever a and b, so dI/da = dI/db = 0 (PyTensor's is NaN
    there, 0 log 0 in its K, for dI/da at x = 0 and dI/db at x = 1); dI/dx is the density's
    limit: inf for a shape below 1, b at x = 0 for a = 1 (PyTensor's: NaN, 0 log 0), 0 above 1.
    Outside a, b > 0 and 0 <= x <= 1 every slope is NaN (JAX's value: NaN, or its limit at a or
    b = 0 and infinite a)."""
    a = np.array([0.5, 1.0, 2.0, 0.5, 2.0, 2.0])
    b = np.array([2.0, 3.0, 2.0, 0.5, 1.0, 3.0])
    x = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    value, slope_a, slope_b, slope_x = betainc_and_slopes(a, b, x)
    np.testing.assert_array_equal(value, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.abs(slope_a), 0.0)
    np.testing.assert_array_equal(np.abs(slope_b), 0.0)
    # 1e-14: 1/B(a, b) as exp of a sum of log-gammas (5 eps off measured)
    np.testing.assert_allclose(slope_x, [np.inf, 3.0, 0.0, np.inf, 2.0, 0.0], rtol=1e-14)
    _, theirs_a, theirs_b, theirs_x = pytensor_betainc_and_slopes()(a, b, x)
    assert np.all(np.isnan(theirs_a[:3])) and np.all(np.isnan(theirs_b[3:]))
    assert np.isnan(theirs_x[1]) and np.isnan(theirs_x[4])
    a = np.array([-1.0, 2.0, 2.0, 2.0, 0.0, 2.0, np.nan, np.inf])
    b = np.array([2.0, -1.0, 2.0, 2.0, 2.0, 0.0, 2.0, 2.0])
    x = np.array([0.5, 0.5, -0.1, 1.1, 0.5, 0.5, 0.5, 0.5])
    _, *slopes = betainc_and_slopes(a, b, x)
    assert np.all(np.isnan(slopes))


def test_betainc_slopes_are_nan_where_the_fraction_has_not_converged() -> None:
    """At a = b = 1e6 the fraction converges within the cap (PyTensor's does not: NaN); at
    a = b = 1e7 ours has not either and gives NaN, as PyTensor does. The slope in x, a closed
    form, stays finite."""
    a = b = np.array([1e6, 1e7])
    x = np.array([0.5, 0.5])
    _, slope_a, slope_b, slope_x = betainc_and_slopes(a, b, x)
    # Normal approximation at the centre of a symmetric beta: dI/da = -1/(2 sqrt(pi a)) (1 + O(1/a))
    np.testing.assert_allclose(slope_a[0], -1 / (2 * math.sqrt(math.pi * 1e6)), rtol=1e-5)
    np.testing.assert_allclose(slope_b[0], -slope_a[0], rtol=1e-10)
    assert np.isnan(slope_a[1]) and np.isnan(slope_b[1]) and np.all(np.isfinite(slope_x))
    _, theirs_a, theirs_b, _ = pytensor_betainc_and_slopes()(a, b, x)
    assert np.all(np.isnan(theirs_a)) and np.all(np.isnan(theirs_b))


def test_betainc_float32() -> None:
    """float32 in, float32 out, to 32 float32 eps times ``log_terms`` (as float64 above; 10.6
    times measured, at a = 0.1, b = 10, x = 1e-3; up to 4.7e-3 relative at a = 0.1, b = 1000,
    where log Gamma(1000) is 5,900)."""
    shapes = np.array(BETAINC_SHAPES)
    rows = [
        (a, b, x) for a in shapes for b in shapes for x in [1e-3, 0.1, a / (a + b), 0.5, 0.9, 0.999]
    ]
    # The float64 reference at the float32 arguments, so that their rounding is no error.
    a, b, x = (np.array(column, np.float32).astype(float) for column in zip(*rows, strict=True))
    exact = betainc_and_slopes(a, b, x)[1:]
    got = betainc_and_slopes(*(v.astype(np.float32) for v in (a, b, x)))[1:]
    allowed = 32 * np.finfo(np.float32).eps * log_terms(a, b, x)
    for g, e in zip(got, exact, strict=True):
        assert g.dtype == np.float32
        normal = np.abs(e) > 1e-30
        error = np.abs(g - e)[normal] / np.abs(e[normal])
        assert np.all(error <= allowed[normal]), np.max(error / allowed[normal])


def test_betainc_translation_is_ours_where_the_gradient_fails() -> None:
    """PyTensor's JAX betainc has no gradient in a or b on either stack: ours replaces it, and
    a PyTensor JAX function computes JAX's value through it."""
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.scalar import math as scalar_math

    assert "BetaInc" in jax_ops.register()
    assert jax_funcify.dispatch(scalar_math.BetaInc).__module__ == jax_ops.__name__
    a, b, x = pt.dvector("a"), pt.dvector("b"), pt.dvector("x")
    f = pytensor.function([a, b, x], pt.betainc(a, b, x), mode="JAX")
    args = np.array([0.5, 2.0, 30.0]), np.array([3.0, 2.0, 0.1]), np.array([0.2, 0.5, 0.99])
    np.testing.assert_allclose(f(*args), sp.betainc(*args), rtol=1e-12)


def hurdle_negative_binomial_model() -> pm.Model:
    counts = np.array([0, 0, 1, 2, 3, 0, 5, 1, 2, 7, 0, 12, 4])
    with pm.Model() as model:
        psi = pm.Beta("psi", 2, 2)
        mu = pm.Gamma("mu", 2, 0.5)
        alpha = pm.Gamma("alpha", 2, 1)
        pm.HurdleNegativeBinomial("y", psi=psi, mu=mu, alpha=alpha, observed=counts)
    return model


def test_hurdle_negative_binomial_matches_pymc() -> None:
    """The zero truncation is log(1 - NegativeBinomial CDF at 0) = log(1 - betainc(alpha, 1,
    alpha / (alpha + mu))): its gradient in alpha is ours. alpha from 0.02 to 2,000 (log alpha
    -4 to 7.6), mu from 0.05 to 150. PyTensor's gradient there (b = 1) is within 2e-11 of the
    exact one (test above): 1e-9 relative allows for the sum over 13 counts."""
    model = hurdle_negative_binomial_model()
    compiled = compile_model(model)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    assert compiled.value_names == ["psi_logodds__", "mu_log__", "alpha_log__"]
    for log_mu, log_alpha in [(1.0, 0.5), (-3.0, -4.0), (5.0, 7.6), (0.0, 3.0), (2.5, -2.0)]:
        flat = np.array([0.3, log_mu, log_alpha])
        got, grad = value_and_grad(flat, compiled.data)
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        np.testing.assert_allclose(float(got), logp(point), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), dlogp(point), rtol=1e-9, atol=1e-9)
