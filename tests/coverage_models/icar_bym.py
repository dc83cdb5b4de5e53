"""Spatial disease mapping, BYM2-style: a pm.ICAR structured effect plus an unstructured one
over a 5 x 4 grid, Poisson counts with expected values."""

import numpy as np
import pymc as pm

ROWS, COLS = 5, 4


def grid_adjacency(rows: int, cols: int) -> np.ndarray:
    """Rook adjacency of a rows x cols grid, areas numbered in C order."""
    n = rows * cols
    adjacency = np.zeros((n, n))
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                adjacency[i, i + 1] = adjacency[i + 1, i] = 1.0
            if r + 1 < rows:
                adjacency[i, i + cols] = adjacency[i + cols, i] = 1.0
    return adjacency


def build_model():
    rng = np.random.default_rng(3702)
    adjacency = grid_adjacency(ROWS, COLS)
    n = ROWS * COLS
    expected = rng.uniform(5.0, 20.0, n)
    gradient = np.linspace(-0.4, 0.4, n)
    counts = rng.poisson(expected * np.exp(0.1 + gradient + rng.normal(0.0, 0.2, n)))
    with pm.Model(coords={"area": [f"a{i:02d}" for i in range(n)]}) as model:
        beta0 = pm.Normal("beta0", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        rho = pm.Beta("rho", 2.0, 2.0)
        phi = pm.ICAR("phi", W=adjacency, dims="area")
        theta = pm.Normal("theta", 0.0, 1.0, dims="area")
        effect = sigma * (pm.math.sqrt(rho) * phi + pm.math.sqrt(1.0 - rho) * theta)
        pm.Poisson("y", mu=expected * pm.math.exp(beta0 + effect), observed=counts, dims="area")
    return model
