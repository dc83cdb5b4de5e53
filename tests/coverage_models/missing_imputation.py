"""Automatic imputation: NaNs in the observed array become the free variable ``y_unobserved``."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1614)
    x = rng.normal(size=50)
    y = rng.normal(1.0 + 2.0 * x, 0.5)
    y[[3, 17, 29, 41]] = np.nan
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 5.0)
        beta = pm.Normal("beta", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", alpha + beta * x, sigma, observed=y)
    return model
