"""Regression: zero-inflated Poisson counts."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1629)
    x = rng.normal(size=200)
    counts = rng.poisson(np.exp(1.2 + 0.4 * x)) * (rng.random(200) < 0.7)
    with pm.Model() as model:
        psi = pm.Beta("psi", 2.0, 2.0)
        intercept = pm.Normal("intercept", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 1.0)
        pm.ZeroInflatedPoisson(
            "counts", psi=psi, mu=pm.math.exp(intercept + beta * x), observed=counts
        )
    return model
