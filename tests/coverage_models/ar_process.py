"""Time series: an observed AR(2) process (pm.AR)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1618)
    n = 120
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.6 * y[t - 1] - 0.2 * y[t - 2] + rng.normal(0.0, 0.8)
    with pm.Model(coords={"lag": [1, 2]}) as model:
        rho = pm.Normal("rho", 0.0, 0.5, dims="lag")
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.AR(
            "y",
            rho=rho,
            sigma=sigma,
            ar_order=2,
            init_dist=pm.Normal.dist(0.0, 2.0, shape=2),
            observed=y,
        )
    return model
