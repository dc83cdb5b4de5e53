"""Mixture over a multivariate component: pm.Mixture of two bivariate MvNormal components with a
shared LKJ covariance, Dirichlet weights and means ordered on the first axis (no label
switching), 100 points."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(3706)
    n = 100
    cov = np.array([[1.0, 0.4], [0.4, 0.8]])
    left = rng.random(n) < 0.4
    centres = np.where(left[:, None], [-2.5, 0.5], [2.5, -0.5])
    y = centres + rng.multivariate_normal(np.zeros(2), cov, n)
    coords = {"component": ["left", "right"], "axis": ["x", "y"]}
    with pm.Model(coords=coords) as model:
        w = pm.Dirichlet("w", a=np.array([2.0, 2.0]), dims="component")
        mu_x = pm.Normal(
            "mu_x",
            0.0,
            5.0,
            dims="component",
            transform=pm.distributions.transforms.ordered,
            initval=np.array([-1.0, 1.0]),
        )
        mu_y = pm.Normal("mu_y", 0.0, 5.0, dims="component")
        chol, _, _ = pm.LKJCholeskyCov(
            "chol", n=2, eta=2.0, sd_dist=pm.Exponential.dist(1.0, shape=2), compute_corr=True
        )
        components = [
            pm.MvNormal.dist(mu=pm.math.stack([mu_x[k], mu_y[k]]), chol=chol) for k in range(2)
        ]
        pm.Mixture("y", w=w, comp_dists=components, observed=y)
    return model
