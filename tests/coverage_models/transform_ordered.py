"""Ordered transform: a Normal vector constrained increasing (well separated group means)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1605)
    truth = np.array([-2.0, 0.5, 3.0])
    group = np.repeat(np.arange(3), 25)
    y = rng.normal(truth[group], 1.0)
    with pm.Model(coords={"level": ["low", "mid", "high"]}) as model:
        mu = pm.Normal(
            "mu",
            0.0,
            5.0,
            dims="level",
            transform=pm.distributions.transforms.ordered,
            initval=np.array([-1.0, 0.0, 1.0]),
        )
        pm.Normal("y", mu[group], 1.0, observed=y)
    return model
