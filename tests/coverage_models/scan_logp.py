"""A log-density computed with pytensor.scan: an AR(1) likelihood added as a pm.Potential."""

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt


def ar1_logp(value, phi, sigma):
    def step(current, previous, phi, sigma):
        return pm.logp(pm.Normal.dist(phi * previous, sigma), current)

    terms, _ = pytensor.scan(
        step, sequences=[value[1:], value[:-1]], non_sequences=[phi, sigma], strict=False
    )
    first = pm.logp(pm.Normal.dist(0.0, sigma / pt.sqrt(1.0 - phi**2)), value[0])
    return first + terms.sum()


def build_model():
    rng = np.random.default_rng(1619)
    n = 80
    y = np.zeros(n)
    y[0] = rng.normal(0.0, 1.0)
    for t in range(1, n):
        y[t] = 0.5 * y[t - 1] + rng.normal(0.0, 1.0)
    with pm.Model() as model:
        phi = pm.Uniform("phi", -0.95, 0.95)
        sigma = pm.HalfNormal("sigma", 2.0)
        series = pm.Data("series", y)
        pm.Potential("ar1_loglik", ar1_logp(series, phi, sigma))
    return model
