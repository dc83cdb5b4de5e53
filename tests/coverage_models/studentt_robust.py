"""Regression: robust linear regression with a StudentT likelihood (a few outliers)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1624)
    x = rng.uniform(-2.0, 2.0, size=100)
    y = 1.0 + 0.7 * x + 0.5 * rng.standard_t(4.0, size=100)
    y[[5, 50, 90]] += np.array([6.0, -5.0, 7.0])
    with pm.Model() as model:
        alpha = pm.Normal("alpha", 0.0, 5.0)
        beta = pm.Normal("beta", 0.0, 5.0)
        sigma = pm.HalfNormal("sigma", 2.0)
        nu = pm.Gamma("nu", alpha=4.0, beta=0.5)
        pm.StudentT("y", nu=nu, mu=alpha + beta * x, sigma=sigma, observed=y)
    return model
