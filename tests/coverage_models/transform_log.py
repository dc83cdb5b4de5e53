"""Log transform: HalfNormal and Exponential scale parameters."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1601)
    y = rng.normal(1.0, 2.0, size=80)
    waits = rng.exponential(1 / 0.5, size=60)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        sigma = pm.HalfNormal("sigma", 5)
        rate = pm.Exponential("rate", 1.0)
        pm.Normal("y", mu, sigma, observed=y)
        pm.Exponential("waits", rate, observed=waits)
    return model
