"""Interval transform: Uniform priors with finite bounds."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1603)
    y = rng.normal(0.7, 1.5, size=60)
    with pm.Model() as model:
        mu = pm.Uniform("mu", -5.0, 5.0)
        sigma = pm.Uniform("sigma", 0.1, 10.0)
        pm.Normal("y", mu, sigma, observed=y)
    return model
