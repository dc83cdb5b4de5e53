"""pm.Data containers with dims (constant_data) in a linear regression."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1615)
    n = 80
    x = rng.normal(size=n)
    y = rng.normal(0.5 - 1.5 * x, 0.7)
    with pm.Model(coords={"obs": np.arange(n)}) as model:
        x_data = pm.Data("x", x, dims="obs")
        alpha = pm.Normal("alpha", 0.0, 5.0)
        beta = pm.Normal("beta", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", alpha + beta * x_data, sigma, observed=y, dims="obs")
    return model
