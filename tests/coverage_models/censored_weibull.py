"""Survival through pm.Censored: Weibull event times with a covariate, right-censored at each
subject's follow-up. PyMC derives the Weibull's log survival as log1mexp of its log CDF, whose
gradient PyTensor's JAX translation gives as NaN where the survival is small (PyMC's numpyro
path too), so its reference comes from PyMC's own NUTS."""

import numpy as np
import pymc as pm

# make_references.py: the numpyro path samples with a NaN gradient here.
REFERENCE_SAMPLER = "pymc"


def build_model():
    rng = np.random.default_rng(1631)
    n = 120
    x = rng.binomial(1, 0.5, size=n).astype(float)
    scale = np.exp(1.0 + 0.5 * x)
    times = scale * rng.weibull(1.5, size=n)
    follow_up = rng.uniform(1.0, 6.0, size=n)
    observed = np.minimum(times, follow_up)
    with pm.Model() as model:
        alpha = pm.HalfNormal("alpha", 3.0)
        intercept = pm.Normal("intercept", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 1.0)
        dist = pm.Weibull.dist(alpha=alpha, beta=pm.math.exp(intercept + beta * x))
        pm.Censored("time", dist, lower=None, upper=follow_up, observed=observed)
    return model
