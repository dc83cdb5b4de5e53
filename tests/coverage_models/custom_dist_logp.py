"""CustomDist with a logp function: a hand-written Laplace likelihood."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def laplace_logp(value, mu, b):
    return -pt.log(2.0 * b) - pt.abs(value - mu) / b


def build_model():
    rng = np.random.default_rng(1612)
    y = rng.laplace(1.0, 0.8, size=100)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        b = pm.HalfNormal("b", 2.0)
        pm.CustomDist("y", mu, b, logp=laplace_logp, observed=y)
    return model
