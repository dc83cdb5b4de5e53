"""JAX translations of PyTensor scalar ops that some supported PyTensor lacks (issue #16).

PyTensor 2.x translates ``erfcx`` and ``erfcinv`` only through tensorflow-probability, so a
plain install cannot translate ``pm.Censored``/``pm.Truncated`` of a Normal (PyMC's normal
logcdf uses ``erfcx``). :func:`register` adds our translations for exactly the ops whose
PyTensor translation fails, and leaves a working one (newer PyTensor, or tfp installed) alone.
For ``betainc`` the translation gives the value but no derivative in a or b (JAX raises), so
no NegativeBinomial CDF (``pm.HurdleNegativeBinomial``) can be differentiated (issue #37): ours
replaces it where that gradient fails.
``benchmarks/op_survey.py`` lists what PyMC's continuous distributions still miss,
``benchmarks/catalogue_survey.py`` the rest of PyMC; ``jax_linalg`` adds the generalized
``eigvalsh`` (``pm.CAR``) the same way.

All are elementwise, accept any real array, compute float16/bfloat16 in float32, and carry a
custom JVP: the analytic derivative in a form that stays accurate where the
textbook one cancels or where autodiff through ``jnp.where`` would give NaN.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

_SQRT_PI = math.sqrt(math.pi)
_TWO_OVER_SQRT_PI = 2.0 / _SQRT_PI


class _Precision(NamedTuple):
    """Per-dtype constants of the erfcx algorithm.

    ``split``: exp(x^2) is evaluated as exp(hi^2) exp(x^2 - hi^2) with hi = x rounded to
    multiples of 1/split; for |x| <= ``overflow`` hi has at most half the mantissa's bits, so
    hi^2 is exact and the only rounding left is in the small remainder. (Plain exp(x*x)
    magnifies the rounding of x*x by x^2 ~ 700: relative error ~1e-13 in float64, ~5e-6 in
    float32.) ``overflow``: beyond it 2 exp(x^2) overflows, the split would not be exact, and
    inf is the answer. ``cf_from``, ``cf_terms``: from there on the continued fraction with
    that many terms is accurate to the dtype's rounding (checked against SciPy in the tests).
    """

    split: float
    overflow: float
    cf_from: float
    cf_terms: int


_F64 = _Precision(split=2.0**20, overflow=27.0, cf_from=3.0, cf_terms=16)
_F32 = _Precision(split=2.0**8, overflow=10.0, cf_from=2.0, cf_terms=10)


def _as_float(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _precision_for(x) -> _Precision:
    return _F64 if x.dtype == jnp.float64 else _F32


def _exp_square_times(x, factor, p: _Precision):
    """exp(x^2) * factor for |x| <= p.overflow, to a few ulps (see _Precision.split).
    ``factor`` multiplies the small part first: the product overflows only if the result does."""
    hi = jnp.round(x * p.split) / p.split
    lo = x - hi  # exact: x and hi agree in all but the last few bits
    return jnp.exp(hi * hi) * (jnp.exp(lo * (hi + x)) * factor)


def _erfcx_continued_fraction(x, p: _Precision):
    """erfcx and its derivative for x >= p.cf_from.

    The even part of Laplace's continued fraction, erfcx(x) = x / sqrt(pi) / (x^2 + 1/2 - u),
    u = 1/2 / (x^2 + 5/2 - 3 / (x^2 + 9/2 - 15/2 / ...)), evaluated bottom-up. Written as
    1 / (sqrt(pi) s) with s = x + (1/2 - u) / x so that it stays finite where x^2 overflows
    (then u = 0, the limit). The derivative 2x erfcx(x) - 2/sqrt(pi) cancels to ~ -1/(sqrt(pi)
    x^2); in terms of u it is 2/sqrt(pi) (u - 1/2) / (x s), with no cancellation."""
    x2 = x * x
    u = jnp.zeros_like(x)
    for k in range(p.cf_terms, 0, -1):
        u = (k * (2 * k - 1) / 2) / (x2 + (2 * k + 0.5) - u)
    s = x + (0.5 - u) / x
    # Divide by x last: x s overflows before the result underflows.
    return (1.0 / _SQRT_PI) / s, _TWO_OVER_SQRT_PI * (u - 0.5) / s / x


def _erfcx_value_and_slope(x):
    p = _precision_for(x)
    far = x >= p.cf_from
    # Each branch gets inputs valid for it only (the untaken one's NaN or inf cannot leak into
    # the result or a derivative): below cf_from erfc(x) has full relative precision.
    x_near = jnp.clip(jnp.where(far, 0.0, x), -p.overflow, p.cf_from)
    y_near = _exp_square_times(x_near, jax.scipy.special.erfc(x_near), p)
    slope_near = 2.0 * x_near * y_near - _TWO_OVER_SQRT_PI
    y_far, slope_far = _erfcx_continued_fraction(jnp.where(far, x, p.cf_from), p)
    return jnp.where(far, y_far, y_near), jnp.where(far, slope_far, slope_near)


@jax.custom_jvp
def _erfcx(x):
    return _erfcx_value_and_slope(x)[0]


@_erfcx.defjvp
def _erfcx_jvp(primals, tangents):
    y, slope = _erfcx_value_and_slope(primals[0])
    return y, slope * tangents[0]


def erfcx(x):
    """Scaled complementary error function exp(x^2) erfc(x), as scipy.special.erfcx."""
    x = _as_float(x)
    if x.dtype in (jnp.float64, jnp.float32):
        return _erfcx(x)
    return _erfcx(x.astype(jnp.float32)).astype(x.dtype)


@jax.custom_jvp
def _erfcinv(y):
    # erfc(z) = 2 ndtr(-z sqrt(2)). Unlike erfinv(1 - y), this keeps tiny y (1 - y rounds to 1
    # below 1e-16) and y near 2 (y/2 and 1 - y/2 are exact there).
    return jax.scipy.special.ndtri(0.5 * y) * (-1.0 / math.sqrt(2.0))


@_erfcinv.defjvp
def _erfcinv_jvp(primals, tangents):
    y = primals[0]
    # The derivative -sqrt(pi)/2 exp(z^2) amplifies z's rounding error by 2 z^2 (~1e-13 at
    # y ~ 1e-300; differentiating ndtri's rational approximations is worse still). With
    # t = erfc(|z|) = min(y, 2 - y), exact, exp(z^2) = erfcx(|z|) / t, and erfcx hardly varies.
    t = jnp.minimum(y, 2.0 - y)
    scaled = erfcx(_erfcinv(t))
    slope = jnp.where(t == 0.0, -jnp.inf, (-0.5 * _SQRT_PI) * scaled / jnp.where(t == 0.0, 1.0, t))
    return _erfcinv(y), slope * tangents[0]


def erfcinv(y):
    """Inverse of erfc on [0, 2], as scipy.special.erfcinv (NaN outside)."""
    y = _as_float(y)
    if y.dtype in (jnp.float64, jnp.float32):
        return _erfcinv(y)
    return _erfcinv(y.astype(jnp.float32)).astype(y.dtype)


# ive(v, x), the exponentially scaled modified Bessel function of the first kind, for integer
# orders (pm.gp.HSGPPeriodic's spectral weights ive(j, 1/ls^2), j = 0..m-1). Two regimes:
# Hankel's asymptotic series where x >= max(_IVE_HANKEL_FROM, v^2/2): there its terms fall at
# least as fast as 1/k! (ratio |4v^2 - (2k-1)^2| / (8kx)) until k ~ 1.4v, then as k/(2x) <= k/80,
# so _IVE_HANKEL_TERMS terms reach 1e-19 (checked against SciPy in the tests). Elsewhere Miller's
# backward recurrence in ratio form, h_k = I_k/I_{k-1} = x / (2k + x h_{k+1}): positive terms
# only, no overflow whatever x, and an error in h_{k+1} shrinks by h_k h_{k+1} each step down.
# It starts at the first N past v where Amos's bound I_{k+1}/I_k < x / (k + 1/2 + sqrt((k +
# 1/2)^2 + x^2)) = exp(-asinh((k + 1/2)/x)) multiplies to below _IVE_START (the error then is
# about its square), so at most about sqrt(v^2 + 46 x) + 40 steps: 6.3v for v^2/2 > 40.
_IVE_HANKEL_FROM = 40.0
_IVE_HANKEL_TERMS = 24
_IVE_START = math.log(1e10)
_IVE_MAX_ORDER = 10_000.0


def _ive_hankel(v, x):
    """ive(v, x) and its x-derivative from Hankel's series for large x (x > 0)."""
    four_v2 = 4.0 * v * v
    term = jnp.ones_like(x)
    total, slope_sum = term, -0.5 * term  # d/dx of x^(-1/2 - k): -(k + 1/2) x^(-3/2 - k)
    for k in range(1, _IVE_HANKEL_TERMS + 1):
        term = -term * (four_v2 - (2 * k - 1) ** 2) / (8.0 * k * x)
        total = total + term
        slope_sum = slope_sum - (k + 0.5) * term
    scale = 1.0 / jnp.sqrt(2.0 * math.pi * x)
    return scale * total, scale * slope_sum / x


def _ive_miller(v, x):
    """ive(v, x) and its x-derivative by the backward recurrence (x >= 0, v integer >= 0)."""

    def needs_more(state):
        k, log_bound = state
        return jnp.any(log_bound < _IVE_START)

    def bound_step(state):
        k, log_bound = state
        more = log_bound < _IVE_START
        return k + more, log_bound + jnp.where(more, jnp.arcsinh((k + 0.5) / x), 0.0)

    # x = 0: the bound is 0 at once (every h_k is 0 there).
    start = jnp.where(x > 0, v, v + 1.0), jnp.where(x > 0, 0.0, jnp.inf)
    top = jnp.max(jax.lax.while_loop(needs_more, bound_step, start)[0], initial=1.0)

    def recurrence_step(i, state):
        h, product, h_above_v = state
        k = top - i  # from top down to 1
        h = x / (2.0 * k + x * h)
        product = jnp.where(k <= v, product * h, product)
        h_above_v = jnp.where(k == v + 1, h, h_above_v)
        return h, product, h_above_v

    zeros = jnp.zeros_like(x)
    _, product, h_above_v = jax.lax.fori_loop(
        0, top.astype(int), recurrence_step, (zeros, jnp.ones_like(x), zeros)
    )
    value = jax.scipy.special.i0e(x) * product
    # d/dx ive = ive (I_v'/I_v - 1), I_v'/I_v = v/x + h_{v+1} (x = 0: the caller's limit).
    slope = value * (v / jnp.where(x > 0, x, 1.0) + h_above_v - 1.0)
    return value, slope


def _ive_value_and_slope(v, x):
    """ive(v, x) and d/dx for integer v (NaN for any other v) and any real x."""
    order = jnp.abs(v)  # I_{-n} = I_n for integer n
    # Beyond _IVE_MAX_ORDER the recurrence would take more than ~6.3e4 steps: NaN instead.
    order = jnp.where(order > _IVE_MAX_ORDER, jnp.nan, order)
    size = jnp.abs(x)
    # ive(n, -x) = (-1)^n ive(n, x); its x-derivative has the other sign.
    odd = jnp.where(jnp.mod(order, 2.0) == 1.0, -1.0, 1.0)
    value_sign = jnp.where(x < 0, odd, 1.0)
    hankel = size >= jnp.maximum(_IVE_HANKEL_FROM, 0.5 * order * order)
    # Each regime gets arguments valid for it alone, so the one not taken cannot leak NaN.
    big = jnp.where(hankel, size, jnp.maximum(_IVE_HANKEL_FROM, 0.5 * order * order))
    small = jnp.where(hankel, 0.0, size)
    small_order = jnp.where(hankel, 0.0, order)
    y_far, slope_far = _ive_hankel(order, big)
    y_near, slope_near = _ive_miller(small_order, small)
    value = jnp.where(hankel, y_far, y_near)
    slope = jnp.where(hankel, slope_far, slope_near)
    bad = (order != jnp.round(order)) | jnp.isnan(x)
    value = jnp.where(bad, jnp.nan, jnp.where(jnp.isinf(size), 0.0, value_sign * value))
    # At x = 0, as PyTensor's (ive(v-1) - 2 sign(x) ive(v) + ive(v+1)) / 2 with its sign(0) =
    # -1: 1 for v = 0 (the slope from the left of ive(0, x) = 1 - |x| + ...), 1/2 for |v| = 1.
    at_zero = jnp.where(order == 0.0, 1.0, jnp.where(order == 1.0, 0.5, 0.0))
    slope = jnp.where(jnp.isinf(size), 0.0, value_sign * slope * jnp.sign(x))
    slope = jnp.where(bad, jnp.nan, jnp.where(size == 0.0, at_zero, slope))
    return value, slope


@jax.custom_jvp
def _ive(v, x):
    return _ive_value_and_slope(v, x)[0]


@partial(_ive.defjvp, symbolic_zeros=True)
def _ive_jvp(primals, tangents):
    v, x = primals
    v_dot, x_dot = tangents
    if not isinstance(v_dot, SymbolicZero):
        raise NotImplementedError("ive: no derivative with respect to the order v")
    y, slope = _ive_value_and_slope(v, x)
    if isinstance(x_dot, SymbolicZero):
        return y, jnp.zeros_like(y)
    return y, slope * x_dot


def ive(v, x):
    """Exponentially scaled modified Bessel function of the first kind, exp(-|x|) I_v(x), as
    scipy.special.ive, for integer orders v (NaN for others); differentiable in x only."""
    x = _as_float(x)
    v = jnp.asarray(v, dtype=x.dtype if x.dtype == jnp.float64 else jnp.float32)
    v, x = jnp.broadcast_arrays(v, x)
    if x.dtype in (jnp.float64, jnp.float32):
        return _ive(v, x)
    return _ive(v.astype(jnp.float32), x.astype(jnp.float32)).astype(x.dtype)


def _ive_translation(op, node=None, **kwargs):
    """Ours serves integer orders: a constant order with another value is refused here, with
    the one line that names the op (an order that is not a constant gives NaN where it is not
    an integer, and the run's check against PyTensor stops it)."""
    import numpy as np
    from pytensor.graph.basic import Constant

    order = node.inputs[0] if node is not None else None
    if isinstance(order, Constant):
        data = np.asarray(order.data)
        if not np.all(data == np.round(data)):
            raise NotImplementedError("ive: mpi_pymc's JAX ive takes integer orders only")
    return ive


# betainc(a, b, x), the regularised incomplete beta function (the NegativeBinomial CDF, so
# pm.HurdleNegativeBinomial's zero truncation). PyTensor translates it to JAX's betainc, whose
# value is right but which has no derivative in a or b (JAX raises). Ours keeps JAX's value and
# adds the derivatives. In x: the density x^(a-1) (1-x)^(b-1) / B(a, b). In a and b: I = K C,
# K = x^a (1-x)^b / (a B(a, b)), C = 1/(1 + d_1/(1 + d_2/(1 + ...))) (DLMF 8.17.22) with
# d_2m = m (b - m) x / ((a + 2m - 1)(a + 2m)), d_2m+1 = -(a + m)(a + b + m) x / ((a + 2m)(a +
# 2m + 1)), used where x <= (a + 1)/(a + b + 2) (elsewhere I_x(a, b) = 1 - I_(1-x)(b, a)). The
# convergents A_n/B_n obey A_(n+1) = A_n + d_n A_(n-1) (B alike); that recurrence differentiated
# in a and b gives the convergents' exact derivatives, and dI = K (C dlog K + dC). A step adds
# one d_k; the steps needed grow with a + b near the mean a/(a + b) (measured: 200-400 at a = b
# = 1e4, 400-1,000 at 1e5, 1,000-2,000 at 1e6). _BETAINC_MAX_STEPS covers a and b up to 1e6
# anywhere; where the fraction has not converged by then (a = b = 1e7) the derivative is NaN,
# as PyTensor's is past its own cap (200 steps of another fraction: NaN already at a = 0.1, b =
# 100, x = 1e-3). A step has converged when C, dC/da and dC/db change by less than
# _BETAINC_TOLERANCE relative to C, |dC/da| + |C dlog K/da| (b alike): the sizes they are added
# to.
_BETAINC_MAX_STEPS = 2000
_BETAINC_TOLERANCE = {jnp.dtype(jnp.float64): 1e-15, jnp.dtype(jnp.float32): 5e-7}


def _betaln(a, b):
    """log B(a, b) as a sum of log-gammas, as PyTensor's gradient computes it: an absolute error
    of about eps log Gamma(a + b) (2e-12 at a + b = 2000). Not JAX's betaln, which on jax 0.10
    is off by up to 7e-7 for arguments below 20 (betaln(10, 3))."""
    gammaln = jax.scipy.special.gammaln
    return gammaln(a) + gammaln(b) - gammaln(a + b)


def _betainc_partial_fraction(k, a, b, x):
    """d_k and its derivatives in a and b (k >= 1)."""
    m = jnp.floor(k / 2)
    even_denominator = (a + 2 * m - 1) * (a + 2 * m)
    d_even = m * (b - m) * x / even_denominator
    da_even = -d_even * (1 / (a + 2 * m - 1) + 1 / (a + 2 * m))
    db_even = m * x / even_denominator  # not d/(b - m): d_2m = 0 at b = m, its derivative is not
    d_odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
    da_odd = d_odd * (1 / (a + m) + 1 / (a + b + m) - 1 / (a + 2 * m) - 1 / (a + 2 * m + 1))
    db_odd = d_odd / (a + b + m)
    even = k == 2 * m
    return (
        jnp.where(even, d_even, d_odd),
        jnp.where(even, da_even, da_odd),
        jnp.where(even, db_even, db_odd),
    )


def _betainc_fraction_slopes(a, b, x, log_x, log_1mx):
    """dI/da and dI/db from the continued fraction (0 <= x <= (a + 1)/(a + b + 2), a, b > 0);
    NaN where it has not converged in _BETAINC_MAX_STEPS. ``log_x``, ``log_1mx``: log x and
    log(1 - x), from the caller's x (the fraction's x may be 1 - x, rounded)."""
    tolerance = _BETAINC_TOLERANCE[x.dtype]
    log_prefactor = a * log_x + b * log_1mx - jnp.log(a) - _betaln(a, b)  # log K
    digamma = jax.scipy.special.digamma
    log_prefactor_da = log_x - 1 / a - digamma(a) + digamma(a + b)
    log_prefactor_db = log_1mx - digamma(b) + digamma(a + b)
    ones, zeros = jnp.ones_like(x), jnp.zeros_like(x)

    # The convergents' numerators A as (A, dA/da, dA/db), their denominators B alike, both
    # divided by the newest B after every step so that nothing overflows (only ratios count).
    # A_0/B_0 = 0/1, A_1/B_1 = 1/1.
    class State(NamedTuple):
        step: jax.Array
        numerator_prev: tuple
        numerator_now: tuple
        denominator_prev: tuple
        denominator_now: tuple
        fraction: tuple  # C, dC/da, dC/db
        done: jax.Array

    def still_running(state):
        return (state.step <= _BETAINC_MAX_STEPS) & ~jnp.all(state.done)

    def advance_one(state):
        d, d_da, d_db = _betainc_partial_fraction(state.step, a, b, x)

        def advance(now, prev):  # (v + d w)' = v' + d' w + d w'
            return (
                now[0] + d * prev[0],
                now[1] + d_da * prev[0] + d * prev[1],
                now[2] + d_db * prev[0] + d * prev[2],
            )

        numerator_new, denominator_new = (
            advance(state.numerator_now, state.numerator_prev),
            advance(state.denominator_now, state.denominator_prev),
        )
        scale = 1 / denominator_new[0]
        numerator_prev, denominator_prev = (
            tuple(v * scale for v in t) for t in (state.numerator_now, state.denominator_now)
        )
        numerator_new, denominator_new = (
            tuple(v * scale for v in t) for t in (numerator_new, denominator_new)
        )
        c = numerator_new[0]  # B = 1 now
        fraction = (
            c,
            numerator_new[1] - c * denominator_new[1],
            numerator_new[2] - c * denominator_new[2],
        )
        old = state.fraction
        scales = (
            jnp.abs(c),
            jnp.abs(fraction[1]) + jnp.abs(c * log_prefactor_da),
            jnp.abs(fraction[2]) + jnp.abs(c * log_prefactor_db),
        )
        converged = state.step >= 3
        for new, before, size in zip(fraction, old, scales, strict=True):
            converged &= jnp.abs(new - before) <= tolerance * size
        done = state.done | converged | jnp.isnan(c)

        def keep(t_new, t_old):  # a finished element stays as it was
            return tuple(jnp.where(state.done, o, n) for n, o in zip(t_new, t_old, strict=True))

        return State(
            state.step + 1,
            keep(numerator_prev, state.numerator_prev),
            keep(numerator_new, state.numerator_now),
            keep(denominator_prev, state.denominator_prev),
            keep(denominator_new, state.denominator_now),
            keep(fraction, old),
            done,
        )

    start = State(
        jnp.asarray(1.0, x.dtype),
        (zeros, zeros, zeros),
        (ones, zeros, zeros),
        (ones, zeros, zeros),
        (ones, zeros, zeros),
        (ones, zeros, zeros),
        jnp.zeros(x.shape, bool),
    )
    final = jax.lax.while_loop(still_running, advance_one, start)
    c, c_da, c_db = final.fraction
    prefactor = jnp.exp(log_prefactor)
    converged = final.done & jnp.isfinite(c)
    # K = 0 (x = 0, or K underflows): the derivatives are 0, not 0 * log 0.
    slope_a = jnp.where(prefactor == 0, 0.0, prefactor * (c * log_prefactor_da + c_da))
    slope_b = jnp.where(prefactor == 0, 0.0, prefactor * (c * log_prefactor_db + c_db))
    return jnp.where(converged, slope_a, jnp.nan), jnp.where(converged, slope_b, jnp.nan)


def _betainc_slopes_ab(a, b, x):
    """dI/da, dI/db for any real a, b, x (NaN outside a, b > 0, 0 <= x <= 1)."""
    valid = (a > 0) & (b > 0) & (x >= 0) & (x <= 1) & jnp.isfinite(a) & jnp.isfinite(b)
    a, b = jnp.where(valid, a, 1.0), jnp.where(valid, b, 1.0)
    x = jnp.where(valid, x, 0.5)
    flip = x > (a + 1) / (a + b + 2)
    log_x, log_1mx = jnp.log(x), jnp.log1p(-x)
    # One call serves both sides: the flipped side is -I_(1-x)(b, a), its a and b swapped.
    slope_first, slope_second = _betainc_fraction_slopes(
        jnp.where(flip, b, a),
        jnp.where(flip, a, b),
        jnp.where(flip, 1 - x, x),
        jnp.where(flip, log_1mx, log_x),
        jnp.where(flip, log_x, log_1mx),
    )
    slope_a = jnp.where(flip, -slope_second, slope_first)
    slope_b = jnp.where(flip, -slope_first, slope_second)
    return jnp.where(valid, slope_a, jnp.nan), jnp.where(valid, slope_b, jnp.nan)


def _betainc_slope_x(a, b, x):
    """The density x^(a-1) (1-x)^(b-1) / B(a, b); at x = 0 with a = 1 (x = 1, b = 1) the
    one-sided limit, not 0 log 0."""
    special = jax.scipy.special
    log_density = special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x) - _betaln(a, b)
    valid = (a > 0) & (b > 0) & (x >= 0) & (x <= 1)
    return jnp.where(valid, jnp.exp(log_density), jnp.nan)


@jax.custom_jvp
def _betainc(a, b, x):
    return jax.scipy.special.betainc(a, b, x)


@partial(_betainc.defjvp, symbolic_zeros=True)
def _betainc_jvp(primals, tangents):
    a, b, x = primals
    a_dot, b_dot, x_dot = tangents
    y = _betainc(a, b, x)
    y_dot = jnp.zeros_like(y)
    if not (isinstance(a_dot, SymbolicZero) and isinstance(b_dot, SymbolicZero)):
        slope_a, slope_b = _betainc_slopes_ab(a, b, x)  # one loop serves both
        if not isinstance(a_dot, SymbolicZero):
            y_dot = y_dot + slope_a * a_dot
        if not isinstance(b_dot, SymbolicZero):
            y_dot = y_dot + slope_b * b_dot
    if not isinstance(x_dot, SymbolicZero):
        y_dot = y_dot + _betainc_slope_x(a, b, x) * x_dot
    return y, y_dot


def betainc(a, b, x):
    """Regularised incomplete beta function I_x(a, b), as scipy.special.betainc (JAX's value),
    differentiable in a, b and x."""
    x = _as_float(x)
    dtype = jnp.result_type(x, _as_float(a), _as_float(b))
    work = dtype if dtype in (jnp.float64, jnp.float32) else jnp.float32
    a, b, x = jnp.broadcast_arrays(*(jnp.asarray(v, work) for v in (a, b, x)))
    return _betainc(a, b, x).astype(dtype)


_IMPLEMENTATIONS = {"Erfcx": erfcx, "Erfcinv": erfcinv, "Ive": ive, "BetaInc": betainc}
_TRANSLATIONS = {"Ive": _ive_translation}  # those that look at the node first
# Ops whose installed translation computes the value but may have no derivative: it fails if
# jax.grad in every input raises at these arguments (JAX's betainc in a and b).
_GRADIENT_PROBES = {"BetaInc": (2.0, 3.0, 0.4)}
_ours: dict[type, object] = {}  # op class -> the dispatch function we registered
_theirs: set[type] = set()  # op classes whose installed translation works


def _translation_fails(op) -> bool:
    from pytensor import scalar as ps
    from pytensor.link.jax.dispatch import jax_funcify

    node = op.make_node(*(ps.float64() for _ in range(op.nin)))
    try:
        translated = jax_funcify(op, node=node)
    except NotImplementedError:
        return True
    probe = _GRADIENT_PROBES.get(type(op).__name__)
    if probe is None:
        return False
    try:
        jax.grad(translated, argnums=tuple(range(op.nin)))(*probe)
    except (ValueError, NotImplementedError, TypeError):
        return True
    return False


def register() -> list[str]:
    """Register our JAX translation of every op in ``_IMPLEMENTATIONS`` whose installed
    PyTensor translation fails. Idempotent and cheap (one probe per op, once); returns the
    names of the ops that use ours (the same list on every call)."""
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.scalar import math as scalar_math

    for name, implementation in _IMPLEMENTATIONS.items():
        op_class = getattr(scalar_math, name)
        if op_class in _ours or op_class in _theirs:
            continue
        if not _translation_fails(getattr(scalar_math, name.lower())):
            _theirs.add(op_class)
            continue

        def returns_it(op, implementation=implementation, **kwargs):
            return implementation

        translate = _TRANSLATIONS.get(name, returns_it)
        jax_funcify.register(op_class)(translate)
        _ours[op_class] = translate
    from mpi_pymc.model import jax_linalg

    return sorted([*(cls.__name__ for cls in _ours), *jax_linalg.register()])
