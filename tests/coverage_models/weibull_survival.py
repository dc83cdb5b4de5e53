"""Survival: Weibull event times with a covariate and right censoring at per-subject follow-up
(events through pm.Weibull, censored subjects through their log survival in a pm.Potential)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1630)
    n = 120
    x = rng.binomial(1, 0.5, size=n).astype(float)
    shape = 1.5
    scale = np.exp(1.0 + 0.5 * x)
    times = scale * rng.weibull(shape, size=n)
    follow_up = rng.uniform(1.0, 6.0, size=n)
    event = times <= follow_up
    observed = np.minimum(times, follow_up)
    with pm.Model() as model:
        alpha = pm.HalfNormal("alpha", 3.0)
        intercept = pm.Normal("intercept", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 1.0)
        scale_ = pm.math.exp(intercept + beta * x)
        pm.Weibull("time", alpha=alpha, beta=scale_[event], observed=observed[event])
        # log S(t) = -(t / scale)^alpha for the subjects still event-free at follow-up
        pm.Potential("censored", -pm.math.sum((observed[~event] / scale_[~event]) ** alpha))
    return model
