"""Regularised ("Finnish") horseshoe regression (Piironen and Vehtari 2017), non-centred.

``MPI_PYMC_HORSESHOE_N`` rows (default 200), ``MPI_PYMC_HORSESHOE_D`` features (default 50), of
which ``MPI_PYMC_HORSESHOE_K`` (default 5) have non-zero coefficients; Gaussian likelihood. The
prior follows brms' ``horseshoe()`` defaults: half-Cauchy local scales, a global scale
``tau ~ half-Student-t(1, 0, tau0 * sigma)`` with ``tau0 = p0 / (D - p0) / sqrt(N)`` from the
expected number of non-zero coefficients ``p0`` (here K), and a slab of scale 2 with 4 degrees
of freedom. Funnel-shaped, heavy-tailed scales: the posterior where a learned metric must not
lose. The data come from a fixed seed, so every rank builds the same model.

Run: ``mpirun -n 2 python -m mpi_pymc run benchmarks/models/horseshoe.py``
"""

import os

import numpy as np
import pymc as pm


def build_model() -> pm.Model:
    n = int(os.environ.get("MPI_PYMC_HORSESHOE_N", "200"))
    d = int(os.environ.get("MPI_PYMC_HORSESHOE_D", "50"))
    k = int(os.environ.get("MPI_PYMC_HORSESHOE_K", "5"))
    rng = np.random.default_rng(20261208)
    X = rng.normal(size=(n, d))
    true_beta = np.zeros(d)
    true_beta[:k] = rng.choice([-1.0, 1.0], size=k) * np.linspace(2.0, 0.5, k)
    y = X @ true_beta + 0.5 + rng.normal(size=n)
    p0, slab_scale, slab_df = k, 2.0, 4.0
    tau0 = p0 / (d - p0) / np.sqrt(n)
    coords = {"feature": [f"x{i}" for i in range(d)], "obs": np.arange(n)}
    with pm.Model(coords=coords) as model:
        X_data = pm.Data("X", X, dims=("obs", "feature"))
        alpha = pm.Normal("alpha", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        tau = pm.HalfStudentT("tau", nu=1.0, sigma=tau0 * sigma)
        lam = pm.HalfCauchy("lam", beta=1.0, dims="feature")
        c2 = pm.InverseGamma("c2", alpha=slab_df / 2, beta=slab_df / 2 * slab_scale**2)
        # The regularised local scales: lam where tau * lam is small against the slab, the
        # slab's scale sqrt(c2) where it is large.
        lam_tilde = pm.math.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2))
        z = pm.Normal("z", 0.0, 1.0, dims="feature")
        beta = pm.Deterministic("beta", z * tau * lam_tilde, dims="feature")
        pm.Normal("y", mu=alpha + X_data @ beta, sigma=sigma, observed=y, dims="obs")
    return model
