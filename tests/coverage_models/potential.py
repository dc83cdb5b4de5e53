"""pm.Potential: a soft sum-to-zero constraint on regression coefficients."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1613)
    X = rng.normal(size=(100, 3))
    y = rng.normal(X @ np.array([1.0, -0.5, -0.4]), 1.0)
    with pm.Model(coords={"feature": ["a", "b", "c"]}) as model:
        beta = pm.Normal("beta", 0.0, 2.0, dims="feature")
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Potential("soft_sum", pm.logp(pm.Normal.dist(0.0, 0.2), beta.sum()))
        pm.Normal("y", X @ beta, sigma, observed=y)
    return model
