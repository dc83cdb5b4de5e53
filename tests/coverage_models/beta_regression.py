"""Regression: Beta likelihood for proportions (logit mean, precision kappa)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1627)
    x = rng.normal(size=100)
    mean = 1 / (1 + np.exp(-(0.2 + 0.8 * x)))
    kappa = 15.0
    y = rng.beta(mean * kappa, (1 - mean) * kappa)
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 2.0)
        kappa_ = pm.HalfNormal("kappa", 30.0)
        mu = pm.math.invlogit(alpha + beta * x)
        pm.Beta("y", alpha=mu * kappa_, beta=(1 - mu) * kappa_, observed=y)
    return model
