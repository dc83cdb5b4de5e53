"""JAX translations of PyTensor scalar ops that some supported PyTensor lacks (issue #16).

PyTensor 2.x translates ``erfcx`` and ``erfcinv`` only through tensorflow-probability, so a
plain install cannot translate ``pm.Censored``/``pm.Truncated`` of a Normal (PyMC's normal
logcdf uses ``erfcx``). :func:`register` adds our translations for exactly the ops whose
PyTensor translation fails, and leaves a working one (newer PyTensor, or tfp installed) alone.
``benchmarks/op_survey.py`` lists what PyMC's continuous distributions still miss,
``benchmarks/catalogue_survey.py`` the rest of PyMC; ``jax_linalg`` adds the generalized
``eigvalsh`` (``pm.CAR``) the same way.

Both functions are elementwise, accept any real array, compute float16/bfloat16 in float32,
and carry a custom JVP: the analytic derivative in a form that stays accurate where the
textbook one cancels or where autodiff through ``jnp.where`` would give NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

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


_IMPLEMENTATIONS = {"Erfcx": erfcx, "Erfcinv": erfcinv}
_ours: dict[type, object] = {}  # op class -> the dispatch function we registered
_theirs: set[type] = set()  # op classes whose installed translation works


def _translation_fails(op) -> bool:
    from pytensor import scalar as ps
    from pytensor.link.jax.dispatch import jax_funcify

    node = op.make_node(*(ps.float64() for _ in range(op.nin)))
    try:
        jax_funcify(op, node=node)
    except NotImplementedError:
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

        def translate(op, implementation=implementation, **kwargs):
            return implementation

        jax_funcify.register(op_class)(translate)
        _ours[op_class] = translate
    from mpi_pymc.model import jax_linalg

    return sorted([*(cls.__name__ for cls in _ours), *jax_linalg.register()])
