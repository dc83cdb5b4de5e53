"""Regression: Binomial with logit_p."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1623)
    x = rng.normal(size=60)
    trials = rng.integers(5, 20, size=60)
    successes = rng.binomial(trials, 1 / (1 + np.exp(-(-0.3 + 0.8 * x))))
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 2.0)
        pm.Binomial("successes", n=trials, logit_p=alpha + beta * x, observed=successes)
    return model
