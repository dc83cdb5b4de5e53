"""Regression: Poisson GLM with a log link."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1622)
    X = rng.normal(size=(150, 2))
    counts = rng.poisson(np.exp(0.5 + X @ np.array([0.4, -0.3])))
    with pm.Model(coords={"feature": ["x1", "x2"]}) as model:
        intercept = pm.Normal("intercept", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 1.0, dims="feature")
        pm.Poisson("counts", mu=pm.math.exp(intercept + X @ beta), observed=counts)
    return model
