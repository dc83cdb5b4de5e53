"""Mixture: NormalMixture of two well separated components with ordered means."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1611)
    component = rng.random(200) < 0.35
    y = np.where(component, rng.normal(-3.0, 1.0, 200), rng.normal(3.0, 1.0, 200))
    with pm.Model(coords={"component": ["left", "right"]}) as model:
        w = pm.Dirichlet("w", a=np.array([2.0, 2.0]), dims="component")
        mu = pm.Normal(
            "mu",
            0.0,
            10.0,
            dims="component",
            transform=pm.distributions.transforms.ordered,
            initval=np.array([-1.0, 1.0]),
        )
        sigma = pm.HalfNormal("sigma", 3.0, dims="component")
        pm.NormalMixture("y", w=w, mu=mu, sigma=sigma, observed=y)
    return model
