"""MvNormal observations with a fixed (known) covariance and an unknown mean vector."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1631)
    cov = np.array([[1.0, 0.6, 0.2], [0.6, 2.0, -0.4], [0.2, -0.4, 0.5]])
    y = rng.multivariate_normal([0.5, -1.0, 2.0], cov, size=40)
    with pm.Model(coords={"axis": ["a", "b", "c"]}) as model:
        mu = pm.Normal("mu", 0.0, 5.0, dims="axis")
        pm.MvNormal("y", mu=mu, cov=cov, observed=y)
    return model
