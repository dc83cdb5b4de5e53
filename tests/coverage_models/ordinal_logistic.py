"""Regression: ordinal outcome (OrderedLogistic) with ordered cutpoints."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1628)
    x = rng.normal(size=200)
    cutpoints = np.array([-1.0, 0.5, 2.0])
    latent = 1.2 * x + rng.logistic(size=200)
    y = np.searchsorted(cutpoints, latent)
    with pm.Model(coords={"cut": ["c1", "c2", "c3"]}) as model:
        beta = pm.Normal("beta", 0.0, 2.0)
        cuts = pm.Normal(
            "cutpoints",
            0.0,
            3.0,
            dims="cut",
            transform=pm.distributions.transforms.ordered,
            initval=np.array([-1.0, 0.0, 1.0]),
        )
        pm.OrderedLogistic("y", eta=beta * x, cutpoints=cuts, observed=y, compute_p=False)
    return model
