"""Poisson GLMM: random intercepts and slopes per group, correlated through an LKJ prior.

``MPI_PYMC_GLMM_GROUPS`` groups (default 150) and ``MPI_PYMC_GLMM_N`` rows (default 15,000), a
data frame with a group label column, one covariate and a count, as a user would have. Each
group's intercept and slope deviate from the population's jointly, with standard deviations and
a correlation from ``pm.LKJCholeskyCov`` (``compute_corr=True``), non-centred. The posterior
correlates the group effects with the population parameters and the covariance's scales. The
data come from a fixed seed, so every rank builds the same model.

Run: ``mpirun -n 2 python -m mpi_pymc run benchmarks/models/glmm_lkj.py``
"""

import os

import numpy as np
import pandas as pd
import pymc as pm


def simulate(groups: int, rows: int, seed: int = 20261208) -> pd.DataFrame:
    """Counts from a Poisson GLMM with correlated group intercepts and slopes."""
    rng = np.random.default_rng(seed)
    sds, corr = np.array([0.5, 0.3]), 0.6
    cov = np.diag(sds) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sds)
    effects = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    # Every group appears at least once; the rest of the rows fall at random (unequal sizes).
    group = np.concatenate([np.arange(groups), rng.integers(groups, size=rows - groups)])
    x = rng.normal(size=rows)
    log_rate = 0.5 + effects[group, 0] + (0.3 + effects[group, 1]) * x
    labels = np.array([f"g{g:03d}" for g in range(groups)])
    return pd.DataFrame({"group": labels[group], "x": x, "y": rng.poisson(np.exp(log_rate))})


def build_model() -> pm.Model:
    groups = int(os.environ.get("MPI_PYMC_GLMM_GROUPS", "150"))
    rows = int(os.environ.get("MPI_PYMC_GLMM_N", "15000"))
    data = simulate(groups, max(rows, groups))
    group_idx, group_labels = pd.factorize(data["group"], sort=True)
    coords = {"group": group_labels, "effect": ["intercept", "slope"], "obs": data.index}
    with pm.Model(coords=coords) as model:
        g = pm.Data("group_idx", group_idx, dims="obs")
        x = pm.Data("x", data["x"].to_numpy(), dims="obs")
        intercept = pm.Normal("intercept", 0.0, 2.0)
        slope = pm.Normal("slope", 0.0, 1.0)
        chol, _, _ = pm.LKJCholeskyCov(
            "chol", n=2, eta=2.0, sd_dist=pm.Exponential.dist(2.0, shape=2), compute_corr=True
        )
        z = pm.Normal("z", 0.0, 1.0, dims=("group", "effect"))
        b = pm.Deterministic("b", z @ chol.T, dims=("group", "effect"))
        log_rate = intercept + b[g, 0] + (slope + b[g, 1]) * x
        pm.Poisson("y", mu=pm.math.exp(log_rate), observed=data["y"].to_numpy(), dims="obs")
    return model
