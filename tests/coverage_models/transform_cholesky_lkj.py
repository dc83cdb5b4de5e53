"""Cholesky/LKJ: LKJCholeskyCov (its correlation and sd Deterministics) with MvNormal(chol=)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1607)
    corr = np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    sds = np.array([1.0, 2.0, 0.5])
    cov = corr * np.outer(sds, sds)
    y = rng.multivariate_normal([1.0, -1.0, 0.0], cov, size=150)
    with pm.Model(coords={"axis": ["u", "v", "w"]}) as model:
        chol, _, _ = pm.LKJCholeskyCov(
            "chol_cov", n=3, eta=2.0, sd_dist=pm.Exponential.dist(1.0, shape=3), compute_corr=True
        )
        mu = pm.Normal("mu", 0.0, 5.0, dims="axis")
        pm.MvNormal("y", mu=mu, chol=chol, observed=y)
    return model
