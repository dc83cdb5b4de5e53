"""Regression: Gamma likelihood with a log link (mean/shape parametrisation)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1625)
    x = rng.normal(size=100)
    mean = np.exp(1.0 + 0.5 * x)
    shape = 3.0
    y = rng.gamma(shape, mean / shape)
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 2.0)
        shape_ = pm.HalfNormal("shape", 5.0)
        mu = pm.math.exp(alpha + beta * x)
        pm.Gamma("y", alpha=shape_, beta=shape_ / mu, observed=y)
    return model
