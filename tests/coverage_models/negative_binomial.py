"""Regression: NegativeBinomial counts with a log link."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1626)
    x = rng.normal(size=120)
    mu = np.exp(1.5 + 0.6 * x)
    dispersion = 4.0
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu))
    with pm.Model() as model:
        intercept = pm.Normal("intercept", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 1.0)
        alpha = pm.HalfNormal("alpha", 10.0)
        pm.NegativeBinomial(
            "counts", mu=pm.math.exp(intercept + beta * x), alpha=alpha, observed=counts
        )
    return model
