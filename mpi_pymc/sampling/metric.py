"""The mass matrix of the project's NUTS and hmc kernels: diagonal, low-rank-plus-diagonal or dense,
as one fixed-shape :class:`Metric`, and its estimate from a window of draws and their gradients.

The metric (inverse mass matrix) is ``M^-1 = S (I + U diag(values - 1) U^T) S``, ``S =
diag(sqrt(inv_diag))``, ``U`` (d, k) orthonormal columns in the space scaled by ``S``. A column
whose value is 1 does nothing, so the shapes stay fixed (for jit, vmap and checkpoints) while the
number of directions in use varies: k = 0 is a diagonal metric, k = d a dense one. Applying it
costs O(dk) per leapfrog; with k = 0 each function is today's diagonal formula, bit for bit.

The estimate minimises the sample Fisher divergence between the target, transformed by the
metric, and a standard normal (Seyboldt, Carlson & Carpenter 2026, "Preconditioning Hamiltonian
Monte Carlo by minimizing Fisher divergence", arXiv:2603.18845; nutpie / nuts-rs's
``low_rank`` adaptation):

1. diagonal: ``inv_diag = std(x) / std(g)`` per coordinate, from window positions x and their
   log-density gradients g (exact for an independent Gaussian target, whatever the draws);
2. in the scaled space ``x~ = (x - mean x) / sqrt(inv_diag)``, ``g~ = (g - mean g) sqrt(inv_diag)``
   take an orthonormal basis Q of the span of both (at most 2n directions), and there the
   covariances ``Cx``, ``Cg`` (plus a ridge, nuts-rs's ``gamma``);
3. the SPD ``A`` with ``A Cg A = Cx``, the geometric mean of ``Cx`` and ``Cg^-1``: ``A =
   Cg^-1/2 (Cg^1/2 Cx Cg^1/2)^1/2 Cg^-1/2``. For a Gaussian with covariance C (scaled) the
   window's exact gradients give Cg = C^-1 Cx C^-1, so A = C for any window whose draws span
   the space: unlike the draws' covariance (Stan's dense metric) it needs no long window;
4. eigendecompose A and keep (at most k) eigenvectors Q v whose eigenvalue leaves the band
   ``[1/cutoff, cutoff]``, largest ``|log lambda|`` first: directions the diagonal already
   scales to within the cutoff are not worth O(d) per leapfrog.

It also owns the fixed-size ring :class:`Buffer` of a window's draws that the estimate reads.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# nuts-rs's defaults (LowRankSettings): eigenvalues within [1/2, 2] are dropped; gamma is the
# ridge, relative to the sum of squares of the window (here gamma / n on the mean).
CUTOFF = 2.0
GAMMA = 1e-5
# Directions kept at most: each costs 4d flops per leapfrog (velocity) and d values per chain.
# On the metric suite's GLMM (d = 305, 150 correlated intercept/slope pairs) 16 were all in use
# and 64 gave 1.6x the ESS per gradient (benchmarks/README.md, issue 34).
K_MAX = 64
# Draws a chain's window buffer keeps (thinned to span the window when it is longer): 1,024
# vectorized chains hold 1024 * B * d * 2 values, 2 GiB at d = 1,000 in float32 with B = 256.
# With n < d draws the estimate still works (it sees 2(n-1) directions), but 64 draws found
# rank 0-1 on that GLMM where 256 found 64 directions and 7x its ESS; pooled over an adaptation
# group of G chains each keeps B / G.
BUFFER_DRAWS = 256
# Stan's regularisation of a window variance: shrink towards 1e-3 with the weight of 5 draws.
STAN_SHRINK_DRAWS, STAN_SHRINK_TO = 5.0, 1e-3
# Clamp of the diagonal, as nuts-rs does: beyond it a float32 momentum would over/underflow.
DIAG_RANGE = (1e-20, 1e20)


def layout(kind: str, d: int, group: int = 1) -> tuple[int, int]:
    """``(k, buffer rows)`` of a run's metric for ``d`` parameters (static shapes), per chain of
    an adaptation group of ``group`` chains that pool their buffers (the pooled window then has
    about ``BUFFER_DRAWS`` rows, at least 4 per chain).

    ``diag``: Stan's window variance, no low-rank columns, no buffer. ``low_rank`` and ``auto``:
    the Fisher estimate with at most :data:`K_MAX` directions outside the cutoff band (so a
    posterior a diagonal fits keeps rank 0, and one of at most K_MAX parameters can end dense).
    ``dense``: every direction, ``k = d``.
    """
    if kind == "diag":
        return 0, 0
    return (d if kind == "dense" else min(K_MAX, d)), max(4, -(-BUFFER_DRAWS // group))


def cutoff_of(kind: str) -> float:
    """The eigenvalue band of ``kind``: a dense metric keeps every direction."""
    return 1.0 if kind == "dense" else CUTOFF


class Metric(NamedTuple):
    """``M^-1 = S (I + U diag(values - 1) U^T) S``, ``S = diag(sqrt(inv_diag))``."""

    inv_diag: jax.Array  # (d,)
    vectors: jax.Array  # (d, k) orthonormal where values != 1, any finite vector elsewhere
    values: jax.Array  # (k,) eigenvalues of the scaled metric; 1 for an unused column


def identity(d: int, k: int, dtype=jnp.float32) -> Metric:
    return diagonal(jnp.ones((d,), dtype), k)


def diagonal(inv_mass: jax.Array, k: int) -> Metric:
    """The diagonal metric ``inv_mass`` with ``k`` unused low-rank columns."""
    return Metric(
        inv_mass, jnp.zeros((inv_mass.shape[-1], k), inv_mass.dtype), jnp.ones((k,), inv_mass.dtype)
    )


def rank(metric: Metric) -> jax.Array:
    """Directions in use (values != 1)."""
    return jnp.sum(metric.values != 1.0)


def velocity(metric: Metric, p: jax.Array) -> jax.Array:
    """``M^-1 p`` for a momentum (..., d): the position's rate of change."""
    diag = metric.inv_diag * p  # with k = 0 this is the whole metric: today's inv_mass * p
    if metric.values.shape[-1] == 0:
        return diag
    scale = jnp.sqrt(metric.inv_diag)
    coeffs = ((scale * p) @ metric.vectors) * (metric.values - 1.0)
    return diag + scale * (coeffs @ metric.vectors.T)


def kinetic(metric: Metric, p: jax.Array) -> jax.Array:
    """``p . M^-1 p / 2`` for one momentum (d,)."""
    diag = 0.5 * jnp.sum(metric.inv_diag * p * p)
    if metric.values.shape[-1] == 0:
        return diag
    projected = (jnp.sqrt(metric.inv_diag) * p) @ metric.vectors
    return diag + 0.5 * jnp.sum((metric.values - 1.0) * projected * projected)


def momentum(metric: Metric, normals: jax.Array) -> jax.Array:
    """A draw from N(0, M) from standard normals (..., d): ``S^-1 (I + U (values^-1/2 - 1)
    U^T) z``, whose covariance is M because the middle factor squares to ``I + U (1/values -
    1) U^T``, the scaled M (U orthonormal)."""
    diag = normals / jnp.sqrt(metric.inv_diag)
    if metric.values.shape[-1] == 0:
        return diag
    coeffs = (normals @ metric.vectors) * (jax.lax.rsqrt(metric.values) - 1.0)
    return diag + (coeffs @ metric.vectors.T) / jnp.sqrt(metric.inv_diag)


def to_dense(metric: Metric) -> jax.Array:
    """``M^-1`` as a (d, d) matrix (for tests and reports; O(d^2))."""
    scale = jnp.sqrt(metric.inv_diag)
    inner = (metric.vectors * (metric.values - 1.0)) @ metric.vectors.T
    return scale[:, None] * (jnp.eye(scale.shape[0], dtype=scale.dtype) + inner) * scale


def change(old: Metric, new: Metric) -> jax.Array:
    """How far ``new`` moved from ``old``: the root mean square over the d dimensions of the log
    eigenvalues of ``old^-1 new``. Exact for two diagonals (the test ``sqrt(mean(log(new /
    old)^2))``, bit for bit) and for two that differ in their values only; otherwise the
    log-Euclidean distance (Arsigny et al. 2007) of ``log M^-1 ~ log S^2 + U log(values) U^T``
    (S and U taken to commute): O(d k^2) where the exact value would take O(d^3). Rounding
    leaves ~sqrt(eps) for two equal metrics."""
    log_diag = jnp.log(new.inv_diag / old.inv_diag)
    if old.values.shape[-1] == 0 and new.values.shape[-1] == 0:
        return jnp.sqrt(jnp.mean(log_diag**2))
    log_new, log_old = jnp.log(new.values), jnp.log(old.values)  # 0 where unused
    weight_new = (new.vectors**2).T @ log_diag  # diag(log_diag) against each column
    weight_old = (old.vectors**2).T @ log_diag
    overlap = (new.vectors.T @ old.vectors) ** 2
    squares = (
        jnp.sum(log_diag**2)
        + jnp.sum(log_new**2)
        + jnp.sum(log_old**2)
        + 2.0 * jnp.vdot(log_new, weight_new)
        - 2.0 * jnp.vdot(log_old, weight_old)
        - 2.0 * log_new @ overlap @ log_old
    )
    return jnp.sqrt(jnp.maximum(squares, 0.0) / log_diag.shape[-1])


def _masked_moments(values, valid, count):
    """The rows centred on the mean of the valid ones (invalid rows zero), and the variance."""
    mean = jnp.sum(jnp.where(valid[:, None], values, 0.0), axis=0) / jnp.maximum(count, 1.0)
    centred = jnp.where(valid[:, None], values - mean, 0.0)
    # A constant column's rounding residue (~eps |mean|) is no spread.
    noise = (16 * jnp.finfo(values.dtype).eps * mean) ** 2 + jnp.finfo(values.dtype).tiny
    variance = jnp.sum(centred * centred, axis=0) / jnp.maximum(count, 1.0)
    return centred, jnp.where(variance > noise, variance, 0.0)


def _fisher_diagonal(var_x, var_g, count):
    """``std(x) / std(g)``, or Stan's regularised variance where that ratio is no number (a
    constant parameter, a constant gradient); and where it is that ratio."""
    ratio = jnp.sqrt(var_x / var_g)
    usable = jnp.isfinite(ratio) & (ratio > 0.0)
    sample_var = var_x * count / jnp.maximum(count - 1.0, 1.0)
    weight = count / (count + STAN_SHRINK_DRAWS)
    stan = weight * sample_var + (1.0 - weight) * STAN_SHRINK_TO
    return jnp.clip(jnp.where(usable, ratio, stan), *DIAG_RANGE), usable


def _ridged_factor(rows, count, ridge):
    """Upper-triangular R with ``R^T R = rows^T rows / count + ridge I``, by QR of the rows
    stacked on ``sqrt(ridge) I``: the covariance is never formed, so its condition number is not
    squared (float32 keeps eigenvalues down to about eps times the largest, not sqrt(eps))."""
    eye = jnp.eye(rows.shape[-1], dtype=rows.dtype)
    stacked = jnp.concatenate([rows / jnp.sqrt(jnp.maximum(count, 1.0)), jnp.sqrt(ridge) * eye])
    return jnp.linalg.qr(stacked, mode="r")


def _geometric_mean(factor_x, factor_g):
    """The SPD ``A`` with ``A Cg A = Cx``, ``C = R^T R`` for the two factors: ``A = Rg^-1 P
    Rg^-T`` with ``P = (Rg Cx Rg^T)^1/2`` (then ``A Cg A = Rg^-1 P^2 Rg^-T = Cx``), P from the
    SVD of ``Rx Rg^T``."""
    _, singular, right = jnp.linalg.svd(factor_x @ factor_g.T, full_matrices=False)
    root = (right.T * singular) @ right
    solve = jax.scipy.linalg.solve_triangular
    half = solve(factor_g, root, lower=False)  # Rg^-1 P
    mean = solve(factor_g, half.T, lower=False)  # Rg^-1 P Rg^-T
    return 0.5 * (mean + mean.T)


def _scaled_eigen(scaled_x, scaled_g, count, gamma):
    """Eigenvalues and (d, r) eigenvectors of A, from the scaled, centred window (n, d)."""
    n, d = scaled_x.shape
    # A basis holding both spans, r = 2n < d directions: Householder QR's Q is orthonormal even
    # for rank-deficient input (invalid rows are zero) and holds every column in its span.
    basis = None
    if 2 * n < d:
        basis, _ = jnp.linalg.qr(jnp.concatenate([scaled_x, scaled_g]).T)
        scaled_x, scaled_g = scaled_x @ basis, scaled_g @ basis
    # nuts-rs's ridge, gamma relative to the sum of squares; but not below what the SVD resolves
    # (eps times its largest singular value, at most the geometric mean of the traces).
    eps = jnp.finfo(scaled_x.dtype).eps
    traces = jnp.sum(scaled_x**2) * jnp.sum(scaled_g**2) / jnp.maximum(count, 1.0) ** 2
    ridge = jnp.maximum(gamma / jnp.maximum(count, 1.0), 10 * eps * jnp.sqrt(traces))
    ridge = jnp.maximum(ridge, jnp.sqrt(jnp.finfo(scaled_x.dtype).tiny))  # an empty window
    factors = [_ridged_factor(rows, count, ridge) for rows in (scaled_x, scaled_g)]
    eigenvalues, eigenvectors = jnp.linalg.eigh(_geometric_mean(*factors))
    return eigenvalues, eigenvectors if basis is None else basis @ eigenvectors


def _outside_band(eigenvalues, eigenvectors, k, cutoff):
    """The (at most) k eigenpairs outside [1/cutoff, cutoff], largest |log lambda| first, as
    ``(values, vectors)``; unused columns value 1, vector 0."""
    outside = (eigenvalues > cutoff) | (eigenvalues < 1.0 / cutoff)
    score = jnp.where(outside, jnp.abs(jnp.log(eigenvalues)), -1.0)
    take = min(k, score.shape[0])
    _, index = jax.lax.top_k(score, take)
    values = jnp.where(outside[index], eigenvalues[index], 1.0)
    vectors = jnp.where(outside[index], eigenvectors[:, index], 0.0)
    pad = k - take
    return jnp.pad(values, (0, pad), constant_values=1.0), jnp.pad(vectors, ((0, 0), (0, pad)))


def estimate(
    positions: jax.Array,
    gradients: jax.Array,
    valid: jax.Array,
    *,
    k: int = K_MAX,
    cutoff: float = CUTOFF,
    gamma: float = GAMMA,
    base_diag: jax.Array | None = None,
) -> Metric:
    """The metric from the rows of ``positions`` and ``gradients`` (n, d) marked ``valid`` (n,)
    (a window buffer, possibly several chains' pooled); ``k`` (static) directions at most.

    ``base_diag``: the diagonal to correct (the window's variance, as Stan estimates it: what the
    project's NUTS and hmc pass), instead of nutpie's Fisher diagonal ``std(x) / std(g)``; the
    latter is exact for a Gaussian but lost a horseshoe regression's heavy-tailed scales (min
    bulk ESS 106 against the variance's 2,355, 172 divergences against 5).
    Rows with a non-finite value count as invalid. With fewer than 3 valid rows it returns the
    identity metric: keep the old one then (``jnp.where``). Pure; jit and vmap it as you need.
    """
    dtype = positions.dtype
    valid = valid & jnp.all(jnp.isfinite(positions), -1) & jnp.all(jnp.isfinite(gradients), -1)
    count = jnp.sum(valid).astype(dtype)
    centred_x, var_x = _masked_moments(positions, valid, count)
    centred_g, var_g = _masked_moments(gradients, valid, count)
    inv_diag, usable = _fisher_diagonal(var_x, var_g, count)
    if base_diag is not None:
        inv_diag = base_diag.astype(dtype)
    # A coordinate whose diagonal fell back to Stan's takes no part in the low-rank step (its
    # x~ and g~ are not the pair the geometric mean assumes; there A is then 1).
    scale = jnp.sqrt(inv_diag)
    scaled_x = jnp.where(usable, centred_x / scale, 0.0)
    scaled_g = jnp.where(usable, centred_g * scale, 0.0)
    if k == 0:  # nutpie's diagonal metric: no eigenproblem to solve
        values, vectors = jnp.ones((0,), dtype), jnp.zeros((positions.shape[-1], 0), dtype)
    else:
        eigenvalues, eigenvectors = _scaled_eigen(scaled_x, scaled_g, count, gamma)
        values, vectors = _outside_band(eigenvalues, eigenvectors, k, cutoff)
    enough = count >= 3
    return Metric(
        inv_diag=jnp.where(enough, inv_diag, 1.0).astype(dtype),
        vectors=jnp.where(enough, vectors, 0.0).astype(dtype),
        values=jnp.where(enough, values, 1.0).astype(dtype),
    )


def dense(
    positions: jax.Array, gradients: jax.Array, valid: jax.Array, *, gamma: float = GAMMA
) -> Metric:
    """The dense Fisher metric: every eigenvalue of :func:`estimate` kept (k = d, cutoff 1)."""
    return estimate(positions, gradients, valid, k=positions.shape[-1], cutoff=1.0, gamma=gamma)


def window_estimate(kind: str, buffer: Buffer, old: Metric, gather=None, base_diag=None) -> Metric:
    """The metric a window's buffer gives (``kind`` low_rank, auto or dense), or ``old`` while
    it holds fewer than 3 draws. ``gather`` pools the rows of an adaptation group's chains
    (e.g. ``all_gather`` over the group's vmap axis); ``base_diag`` is the diagonal to correct
    (see :func:`estimate`). Run it under ``lax.cond`` at a window's
    end: in sequential chains it then costs nothing elsewhere."""
    positions, gradients, valid = buffer.positions, buffer.gradients, filled(buffer)
    if gather is not None:
        positions, gradients, valid = (gather(v) for v in (positions, gradients, valid))
    fresh = estimate(
        positions, gradients, valid, k=old.values.shape[-1], cutoff=cutoff_of(kind),
        base_diag=base_diag,
    )  # fmt: skip
    enough = jnp.sum(valid) >= 3
    return jax.tree_util.tree_map(lambda a, b: jnp.where(enough, a, b).astype(b.dtype), fresh, old)


class Buffer(NamedTuple):
    """A window's latest draws, a ring of B rows: ``n`` draws were added, row ``i % B`` holds
    the ``i``-th, so the last ``min(n, B)`` are kept."""

    positions: jax.Array  # (B, d)
    gradients: jax.Array  # (B, d)
    n: jax.Array  # () int32


def empty_buffer(d: int, draws: int = BUFFER_DRAWS, dtype=jnp.float32) -> Buffer:
    zeros = jnp.zeros((draws, d), dtype)
    return Buffer(zeros, zeros, jnp.zeros((), jnp.int32))


def push(buffer: Buffer, position: jax.Array, gradient: jax.Array, active) -> Buffer:
    """Add a draw (its position and log-density gradient) when ``active`` (a slow window's
    iteration; the caller may thin by passing every t-th one)."""
    if buffer.positions.shape[0] == 0:  # the diagonal metric keeps no draws
        return buffer
    row = buffer.n % buffer.positions.shape[0]
    # Write the row either way (its old value when inactive): O(d), not a select over (B, d).
    return Buffer(
        positions=buffer.positions.at[row].set(jnp.where(active, position, buffer.positions[row])),
        gradients=buffer.gradients.at[row].set(jnp.where(active, gradient, buffer.gradients[row])),
        n=buffer.n + jnp.where(active, 1, 0).astype(jnp.int32),
    )


def filled(buffer: Buffer) -> jax.Array:
    """(B,) bool: the rows that hold a draw of the current window (``estimate``'s ``valid``)."""
    return jnp.arange(buffer.positions.shape[0]) < buffer.n


def restarted(buffer: Buffer, restart) -> Buffer:
    """``buffer``, or an empty one where ``restart`` (a window ended); the rows need no
    clearing, :func:`filled` masks them."""
    return buffer._replace(n=jnp.where(restart, 0, buffer.n).astype(jnp.int32))
