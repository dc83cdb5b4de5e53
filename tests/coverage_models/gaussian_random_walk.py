"""Time series: a latent GaussianRandomWalk observed with noise."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1617)
    steps = 30
    path = np.cumsum(rng.normal(0.0, 0.3, size=steps))
    y = rng.normal(path, 0.5)
    with pm.Model(coords={"time": np.arange(steps)}) as model:
        walk = pm.GaussianRandomWalk(
            "walk", sigma=0.3, init_dist=pm.Normal.dist(0.0, 1.0), dims="time"
        )
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", walk, sigma, observed=y, dims="time")
    return model
