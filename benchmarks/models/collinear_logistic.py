"""Logistic regression with collinear predictors: AR(1) features, adjacent ones correlated 0.95.

``MPI_PYMC_COLLINEAR_N`` rows (default 20,000), ``MPI_PYMC_COLLINEAR_D`` features (default 30)
and ``MPI_PYMC_COLLINEAR_RHO``, the correlation of adjacent features (default 0.95; features
``i`` and ``j`` correlate ``rho**|i - j|``). The data come from a fixed seed, so every rank
builds the same model. The posterior of ``beta`` inherits the features' correlation: a
diagonal mass matrix fits it badly, which is what this model is in the metric suite for.

Run: ``mpirun -n 2 python -m mpi_pymc run benchmarks/models/collinear_logistic.py``
"""

import os

import numpy as np
import pymc as pm


def build_model() -> pm.Model:
    n = int(os.environ.get("MPI_PYMC_COLLINEAR_N", "20000"))
    d = int(os.environ.get("MPI_PYMC_COLLINEAR_D", "30"))
    rho = float(os.environ.get("MPI_PYMC_COLLINEAR_RHO", "0.95"))
    rng = np.random.default_rng(20261208)
    # AR(1) across the columns: each feature is rho times its left neighbour plus fresh noise,
    # so every column has unit variance and corr(x_i, x_j) = rho ** |i - j|.
    noise = rng.normal(size=(n, d))
    X = np.empty((n, d))
    X[:, 0] = noise[:, 0]
    for j in range(1, d):
        X[:, j] = rho * X[:, j - 1] + np.sqrt(1.0 - rho**2) * noise[:, j]
    true_beta = rng.normal(scale=0.5, size=d)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ true_beta - 0.3)))
    coords = {"feature": [f"x{i}" for i in range(d)], "obs": np.arange(n)}
    with pm.Model(coords=coords) as model:
        X_data = pm.Data("X", X, dims=("obs", "feature"))
        alpha = pm.Normal("alpha", 0.0, 2.5)
        beta = pm.Normal("beta", 0.0, 1.0, dims="feature")
        pm.Bernoulli("y", logit_p=alpha + X_data @ beta, observed=y.astype("int8"), dims="obs")
    return model
