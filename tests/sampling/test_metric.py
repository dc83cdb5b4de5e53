"""Tests of the metric maths: the diagonal case is today's formulas bit for bit, the low-rank
operations are one consistent M, and the Fisher estimate recovers known Gaussians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpi_pymc.sampling import metric

jax.config.update("jax_enable_x64", True)

DTYPES = [jnp.float32, jnp.float64]
# One compiled program per shape, dtype and k, shared by the tests (a compile takes ~2 s here;
# the tests reuse four window shapes: (200, 20), (24, 50), (40, 50) and a vmapped (3, 24, 50)).
estimate = jax.jit(metric.estimate, static_argnames="k")
dense = jax.jit(metric.dense)
# Eager small functions compile one program per operation; jitted, one per function.
velocity, kinetic, momentum = (
    jax.jit(f) for f in (metric.velocity, metric.kinetic, metric.momentum)
)
change, to_dense = jax.jit(metric.change), jax.jit(metric.to_dense)
outside_band = jax.jit(metric._outside_band, static_argnums=2)


def gaussian(d, seed, strong=(600.0, 60.0, 15.0)):
    """A covariance with condition number ~1e4: variances log-spaced over 1e-2..1 (what the
    diagonal handles) times three strong correlated directions (what it cannot)."""
    rng = np.random.default_rng(seed)
    variances = np.geomspace(1e-2, 1.0, d)[rng.permutation(d)]
    u, _ = np.linalg.qr(rng.normal(size=(d, len(strong))))
    correlation = np.eye(d) + u @ np.diag(np.array(strong) - 1.0) @ u.T
    return np.sqrt(variances)[:, None] * correlation * np.sqrt(variances)


def draws(cov, n, seed, mean=3.0):
    """n exact draws and their exact log-density gradients ``-cov^-1 (x - mean)``."""
    rng = np.random.default_rng(seed + 1000)
    x = rng.normal(size=(n, cov.shape[0])) @ np.linalg.cholesky(cov).T + mean
    return x, -np.linalg.solve(cov, (x - mean).T).T


def random_metric(d, k, seed, dtype=jnp.float64, unused=1):
    """Orthonormal vectors, values spread over 0.05..20, the last ``unused`` columns unused."""
    rng = np.random.default_rng(seed)
    vectors, _ = np.linalg.qr(rng.normal(size=(d, k)))
    values = np.exp(rng.uniform(np.log(0.05), np.log(20.0), k))
    vectors[:, k - unused :] = 0.0
    values[k - unused :] = 1.0
    inv_diag = np.exp(rng.uniform(-3, 3, d))
    return metric.Metric(*(jnp.asarray(a, dtype) for a in (inv_diag, vectors, values)))


def generalised_eigenvalues(cov, inv_mass):
    """Eigenvalues of ``cov`` in the metric: 1 everywhere for a perfect ``inv_mass``."""
    chol = np.linalg.cholesky(inv_mass)
    return np.linalg.eigvalsh(np.linalg.solve(chol, np.linalg.solve(chol, cov).T))


# --- k = 0 is today's diagonal metric, bit for bit --------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jit", [False, True])
def test_diagonal_is_bit_identical(dtype, jit):
    rng = np.random.default_rng(0)
    inv_mass = jnp.asarray(np.exp(rng.normal(size=7)), dtype)
    p = jnp.asarray(rng.normal(size=7), dtype)
    m = metric.diagonal(inv_mass, 0)
    wrap = jax.jit if jit else (lambda f: f)
    got = [wrap(f)(m, p) for f in (metric.velocity, metric.kinetic, metric.momentum)]
    today = [
        wrap(lambda im, p: im * p)(inv_mass, p),
        wrap(lambda im, p: 0.5 * jnp.sum(im * p * p))(inv_mass, p),
        wrap(lambda im, z: z / jnp.sqrt(im))(inv_mass, p),
    ]
    for a, b in zip(got, today, strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    new = metric.diagonal(inv_mass * 1.7, 0)
    expected = wrap(lambda a, b: jnp.sqrt(jnp.mean(jnp.log(b / a) ** 2)))(inv_mass, inv_mass * 1.7)
    np.testing.assert_array_equal(wrap(metric.change)(m, new), expected)


def test_unused_columns_change_nothing():
    """k > 0 with every column unused is the diagonal metric (to rounding: the extra terms
    multiply by values - 1 = 0)."""
    rng = np.random.default_rng(1)
    inv_mass = jnp.asarray(np.exp(rng.normal(size=5)))
    p = jnp.asarray(rng.normal(size=5))
    padded = metric.diagonal(inv_mass, 3)
    assert metric.rank(padded) == 0
    np.testing.assert_array_equal(metric.velocity(padded, p), inv_mass * p)
    np.testing.assert_array_equal(metric.momentum(padded, p), p / jnp.sqrt(inv_mass))
    np.testing.assert_array_equal(metric.kinetic(padded, p), 0.5 * jnp.sum(inv_mass * p * p))
    ident = metric.identity(5, 2, jnp.float32)
    assert ident.inv_diag.dtype == jnp.float32 and ident.vectors.shape == (5, 2)


# --- the low-rank operations are one consistent M --------------------------------------------


@pytest.mark.parametrize("k", [3, 6])  # 6 = d: a dense metric
def test_operations_agree_with_dense_matrix(k):
    d = 6
    m = random_metric(d, k, seed=k, unused=1 if k < d else 0)
    inv_mass = np.asarray(to_dense(m))
    np.testing.assert_allclose(inv_mass, inv_mass.T, atol=1e-12)
    eye = jnp.eye(d)
    # velocity on a batch (rows) is the matrix; the kinetic energy's gradient is the velocity.
    np.testing.assert_allclose(velocity(m, eye), inv_mass, rtol=1e-12, atol=1e-12)
    p = jnp.asarray(np.random.default_rng(2).normal(size=d))
    np.testing.assert_allclose(jax.grad(lambda q: kinetic(m, q))(p), inv_mass @ p, 1e-12)
    np.testing.assert_allclose(kinetic(m, p), 0.5 * p @ inv_mass @ p, rtol=1e-12)
    # momentum(z) = R z with R R^T = M = (M^-1)^-1, exactly (no sampling).
    r = np.asarray(momentum(m, eye)).T
    np.testing.assert_allclose(inv_mass @ (r @ r.T), np.eye(d), atol=1e-10)


def test_momentum_covariance_by_sampling():
    """Over N draws a sample covariance entry has sd sqrt((M_ii M_jj + M_ij^2) / N) (Gaussian
    fourth moments); every entry lies within 5 of them."""
    d, n = 5, 40_000
    m = random_metric(d, 3, seed=3)
    mass = np.linalg.inv(np.asarray(to_dense(m)))
    z = jax.random.normal(jax.random.key(0), (n, d), jnp.float64)
    p = np.asarray(jax.jit(jax.vmap(metric.momentum, (None, 0)))(m, z))
    sample = p.T @ p / n  # the mean is known to be 0
    sd = np.sqrt((np.outer(np.diag(mass), np.diag(mass)) + mass**2) / n)
    assert np.all(np.abs(sample - mass) < 5 * sd)


# --- the estimate --------------------------------------------------------------------------


def test_dense_recovers_gaussian_exactly():
    """With exact gradients of a Gaussian and a full-rank window the Fisher solution is the
    covariance itself, whatever the draws: Cg = C^-1 Cx C^-1, so A = C solves A Cg A = Cx. The
    only error is the ridge rho = gamma / n added to both: relative to the smallest eigenvalues
    of Cx (l_min) and of Cg (1 / l_max) in the scaled space, at most rho (1 / l_min + l_max)."""
    d, n = 20, 200
    cov = gaussian(d, seed=0)
    eig = np.linalg.eigvalsh(cov)
    assert 3e3 < eig[-1] / eig[0] < 3e4
    x, g = draws(cov, n, seed=0)
    m = dense(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool))
    scale = np.sqrt(np.asarray(m.inv_diag))
    scaled = np.linalg.eigvalsh(cov / scale[:, None] / scale[None, :])
    bound = metric.GAMMA / n * (1 / scaled[0] + scaled[-1])
    assert np.abs(generalised_eigenvalues(cov, metric.to_dense(m)) - 1).max() < 2 * bound


def test_low_rank_recovers_gaussian_within_band():
    """Dropping the eigenvalues within [1/c, c] leaves every generalised eigenvalue of the
    target in that band: the metric's error in any direction (the strong ones too) is at most
    a factor c, the trade the cutoff makes. The diagonal alone is off by ~90 along the
    strongest direction."""
    d, n = 20, 200
    cov = gaussian(d, seed=0)
    x, g = draws(cov, n, seed=0)
    full = estimate(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool), k=d)
    assert metric.rank(full) >= 3
    eig = generalised_eigenvalues(cov, np.asarray(metric.to_dense(full)))
    assert eig.min() > 1 / metric.CUTOFF - 1e-5 and eig.max() < metric.CUTOFF + 1e-5
    diagonal_only = generalised_eigenvalues(cov, np.diag(np.asarray(full.inv_diag)))
    assert diagonal_only.max() > 20 * metric.CUTOFF
    # k = 0: the same diagonal (nutpie's diagonal metric) without the eigenproblem.
    plain = estimate(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool), k=0)
    assert plain.vectors.shape == (d, 0)
    np.testing.assert_array_equal(plain.inv_diag, full.inv_diag)


def test_cap_keeps_largest_log_eigenvalues():
    eigenvalues = jnp.asarray([0.1, 0.6, 1.0, 1.9, 2.5, 30.0, 0.45])
    vectors = jnp.eye(7)
    values, kept = outside_band(eigenvalues, vectors, 3, 2.0)
    # |log| 3.4, 2.3, 0.92 kept; 0.45 (|log| 0.80) is the 4th, over the cap.
    np.testing.assert_array_equal(values, [30.0, 0.1, 2.5])
    np.testing.assert_array_equal(kept, vectors[:, [5, 0, 4]])
    values, kept = outside_band(eigenvalues, vectors, 9, 2.0)  # k > r: padded
    np.testing.assert_array_equal(values, [30.0, 0.1, 2.5, 0.45, 1, 1, 1, 1, 1])
    assert kept.shape == (7, 9) and np.all(kept[:, 4:] == 0)


@pytest.mark.parametrize("n", [24, 40])  # 2n < d: the projected path; n < d <= 2n: full space
def test_low_rank_recovers_strong_directions_from_few_draws(n):
    """n < d draws span n - 1 directions; outside them the estimate keeps the diagonal, so a
    strong direction's variance is estimated from what of it the draws see. Tolerance: 4 sd of
    the log of a sample variance of n draws, 4 sqrt(2 / (n - 1)) (as good as the variance of
    the draws along the known direction, which no estimator of n draws beats by much)."""
    d = 50
    cov = gaussian(d, seed=1)
    x, g = draws(cov, n, seed=1)
    m = estimate(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool), k=metric.K_MAX)
    inv_mass = np.asarray(metric.to_dense(m))
    eig, vec = np.linalg.eigh(cov)
    strong = vec[:, -3:]
    ratio = np.einsum("ij,ik,kj->j", strong, inv_mass, strong) / eig[-3:]
    assert np.all(np.abs(np.log(ratio)) < 4 * np.sqrt(2 / (n - 1)))
    # The largest generalised eigenvalue (what sets the step size) falls severalfold.
    worst = generalised_eigenvalues(cov, inv_mass).max()
    assert worst < generalised_eigenvalues(cov, np.diag(np.asarray(m.inv_diag))).max() / 4


@pytest.mark.parametrize("dtype,n", [(jnp.float32, 24), (jnp.float64, 40)])
def test_independent_target_keeps_the_diagonal(dtype, n):
    """Independent coordinates: std(x) / std(g) is each variance exactly (g = -x / var), the
    scaled draws and gradients are negatives, A = I, nothing leaves the band (n = 24: the
    projected path, n = 40: the full space)."""
    d = 50
    variances = np.geomspace(1e-2, 1e2, d)
    x, g = draws(np.diag(variances), n, seed=2)
    m = estimate(jnp.asarray(x, dtype), jnp.asarray(g, dtype), jnp.ones(n, bool), k=metric.K_MAX)
    assert metric.rank(m) == 0 and np.all(np.asarray(m.values) == 1.0)
    tolerance = 1e-4 if dtype == jnp.float32 else 1e-10
    np.testing.assert_allclose(m.inv_diag, variances, rtol=tolerance)


def test_fisher_equation_holds_off_gaussian():
    """Whatever the target, the dense metric solves M^-1 Cov(g) M^-1 = Cov(x) (the estimate's
    defining equation, in the original coordinates), to the ridge's relative size."""
    rng = np.random.default_rng(3)
    d, n = 20, 200
    x = rng.standard_t(4, size=(n, d)) @ rng.normal(size=(d, d))
    g = np.tanh(x) @ rng.normal(size=(d, d)) + rng.normal(size=(n, d))
    inv_mass = np.asarray(metric.to_dense(dense(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool))))
    cov_x, cov_g = np.cov(x.T, bias=True), np.cov(g.T, bias=True)
    residual = np.linalg.solve(cov_x, inv_mass @ cov_g @ inv_mass) - np.eye(d)
    assert np.abs(residual).max() < 1e-4


def test_projection_changes_nothing():
    """Padding a window of n < d/2 draws with invalid rows (so the full-space path runs) gives
    the same metric: the projection only drops directions where A is 1 anyway."""
    d, n, rows = 50, 24, 40
    x, g = draws(gaussian(d, seed=4), n, seed=4)
    small = estimate(jnp.asarray(x), jnp.asarray(g), jnp.ones(n, bool), k=metric.K_MAX)
    garbage = np.full((rows - n, d), np.nan)
    padded = estimate(
        jnp.asarray(np.concatenate([x, garbage])),
        jnp.asarray(np.concatenate([g, garbage])),
        jnp.asarray(np.arange(rows) < n),
        k=metric.K_MAX,
    )
    assert metric.rank(small) > 0
    np.testing.assert_allclose(
        metric.to_dense(small), metric.to_dense(padded), rtol=1e-7, atol=1e-10
    )


# --- guards, jit, vmap ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype,n", [(jnp.float32, 24), (jnp.float64, 40)])
def test_constant_column_and_bad_rows(dtype, n):
    """A constant parameter (a stuck coordinate) gets Stan's regularised variance and no
    low-rank part; non-finite rows are skipped; fewer than 3 rows give the identity."""
    d = 50
    x, g = draws(gaussian(d, seed=5), n, seed=5)
    x[:, 2], g[:, 2] = 1.5, 0.0
    x[7], g[9, 0] = np.inf, np.nan  # rows marked valid but not finite
    args = jnp.asarray(x, dtype), jnp.asarray(g, dtype)
    m = estimate(*args, jnp.ones(n, bool), k=metric.K_MAX)
    for leaf in m:
        assert leaf.dtype == dtype and np.all(np.isfinite(leaf))
    assert metric.rank(m) > 0
    count = n - 2
    stan = 1e-3 * 5 / (count + 5)  # zero variance, shrunk towards 1e-3 with weight 5 draws
    np.testing.assert_allclose(m.inv_diag[2], stan, rtol=1e-5)
    # e_2 is an eigenvector of A with value 1 exactly; rounding mixes it with neighbours by
    # ~eps / gap (float32: 1e-4 or so), a negligible share of the metric at coordinate 2.
    np.testing.assert_allclose(m.vectors[2], 0.0, atol=1e-3 if dtype == jnp.float32 else 1e-8)
    few = estimate(*args, jnp.arange(n) < 2, k=metric.K_MAX)
    np.testing.assert_array_equal(few.inv_diag, 1.0)
    np.testing.assert_array_equal(few.values, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_over_chains_matches_each_chain(dtype):
    """A per-chain estimate under vmap, chains' windows filled to different rows."""
    chains, d, b = 3, 50, 24
    cov = gaussian(d, seed=6)
    pairs = [draws(cov, b, seed=6 + c) for c in range(chains)]
    x = jnp.asarray(np.stack([p[0] for p in pairs]), dtype)
    g = jnp.asarray(np.stack([p[1] for p in pairs]), dtype)
    valid = jnp.asarray(np.arange(b)[None, :] < np.array([[24], [13], [5]]))
    batched = jax.jit(jax.vmap(metric.estimate))(x, g, valid)
    tolerance = 1e-2 if dtype == jnp.float32 else 1e-8
    for c in range(chains):
        one = metric.to_dense(estimate(x[c], g[c], valid[c], k=metric.K_MAX))
        many = metric.to_dense(jax.tree_util.tree_map(lambda a, c=c: a[c], batched))
        assert np.all(np.isfinite(np.asarray(many)))
        scale = np.sqrt(np.outer(np.diag(one), np.diag(one)))
        assert np.abs((np.asarray(many) - np.asarray(one)) / scale).max() < tolerance


def test_float32_agrees_with_float64():
    """The ill-conditioned target in float32: the factored geometric mean (never squaring the
    covariances) keeps the metric within 1e-2 of float64's."""
    d, n = 50, 24
    x, g = draws(gaussian(d, seed=1), n, seed=1)
    ones = jnp.ones(n, bool)
    m64 = metric.to_dense(estimate(jnp.asarray(x), jnp.asarray(g), ones, k=metric.K_MAX))
    m32 = metric.to_dense(
        estimate(jnp.asarray(x, jnp.float32), jnp.asarray(g, jnp.float32), ones, k=metric.K_MAX)
    )
    scale = np.sqrt(np.outer(np.diag(m64), np.diag(m64)))
    assert np.abs((np.asarray(m32, np.float64) - m64) / scale).max() < 1e-2


# --- the buffer and the change --------------------------------------------------------------


def test_buffer_is_a_ring_of_the_latest_draws():
    d, b = 3, 4
    push = jax.jit(metric.push)
    buffer = metric.empty_buffer(d, b, jnp.float64)
    for i in range(7):
        buffer = push(buffer, jnp.full(d, float(i)), jnp.full(d, -float(i)), i != 2)
    assert int(buffer.n) == 6  # iteration 2 was inactive
    # Six draws (0, 1, 3, 4, 5, 6) in four rows: the last four, 5 and 6 over 0 and 1.
    np.testing.assert_array_equal(buffer.positions[:, 0], [5.0, 6.0, 3.0, 4.0])
    np.testing.assert_array_equal(buffer.gradients[:, 0], [-5.0, -6.0, -3.0, -4.0])
    assert np.all(metric.filled(buffer))
    buffer = metric.restarted(buffer, jnp.asarray(True))
    assert not np.any(metric.filled(buffer))
    buffer = push(buffer, jnp.ones(d), jnp.ones(d), True)
    np.testing.assert_array_equal(metric.filled(buffer), [True, False, False, False])


def test_change():
    d, k = 8, 3
    old = random_metric(d, k, seed=7)
    # Zero up to the square root of rounding: the sum of squares cancels to ~1e-15.
    assert float(change(old, old)) < 1e-6
    # Same diagonal and vectors, other values: the two commute and the measure is the exact
    # root mean square of the log generalised eigenvalues.
    new = old._replace(values=old.values * jnp.asarray([2.0, 0.5, 1.0]))
    eig = generalised_eigenvalues(np.asarray(to_dense(new)), to_dense(old))
    exact = np.sqrt(np.mean(np.log(eig) ** 2))
    np.testing.assert_allclose(change(old, new), exact, rtol=1e-10)
    other = random_metric(d, k, seed=8)
    np.testing.assert_allclose(change(old, other), change(other, old), rtol=1e-12)
    assert float(change(old, other)) > 0.1
