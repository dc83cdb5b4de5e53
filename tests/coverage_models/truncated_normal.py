"""Truncated likelihood: a Normal truncated below at zero."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1610)
    draws = rng.normal(0.8, 1.0, size=600)
    y = draws[draws > 0.0][:150]
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 3.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Truncated("y", pm.Normal.dist(mu, sigma), lower=0.0, observed=y)
    return model
