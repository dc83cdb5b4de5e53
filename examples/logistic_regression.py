"""Logistic regression on synthetic data; size from the environment.

``MPI_PYMC_N`` observations (default 2,000) and ``MPI_PYMC_D`` features (default 10). The data
come from a fixed seed, so every rank builds the same model (the fingerprint check needs that).

Run: ``MPI_PYMC_N=50000 MPI_PYMC_D=20 mpirun -n 2 python -m mpi_pymc run
examples/logistic_regression.py``
"""

import os

import numpy as np
import pymc as pm


def build_model() -> pm.Model:
    n = int(os.environ.get("MPI_PYMC_N", "2000"))
    d = int(os.environ.get("MPI_PYMC_D", "10"))
    rng = np.random.default_rng(20261127)
    X = rng.normal(size=(n, d))
    true_beta = rng.normal(scale=0.5, size=d)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ true_beta - 0.3)))
    coords = {"feature": [f"x{i}" for i in range(d)], "obs": np.arange(n)}
    with pm.Model(coords=coords) as model:
        X_data = pm.Data("X", X, dims=("obs", "feature"))
        alpha = pm.Normal("alpha", 0.0, 2.5)
        beta = pm.Normal("beta", 0.0, 1.0, dims="feature")
        pm.Bernoulli("y", logit_p=alpha + X_data @ beta, observed=y.astype("int8"), dims="obs")
    return model
