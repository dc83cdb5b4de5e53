"""Censored likelihood: a Normal observed through a detection limit (censored above)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1609)
    upper = 1.5
    y = np.minimum(rng.normal(0.5, 1.2, size=120), upper)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 3.0)
        pm.Censored("y", pm.Normal.dist(mu, sigma), lower=None, upper=upper, observed=y)
    return model
