"""A 2-D parameter with two named dims (region x product) and string coords."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1616)
    regions = ["north", "south", "east"]
    products = ["p1", "p2", "p3", "p4"]
    truth = rng.normal(0.0, 1.0, size=(3, 4))
    region = np.repeat(np.arange(3), 40)
    product = np.tile(np.arange(4), 30)
    y = rng.normal(truth[region, product], 1.0)
    with pm.Model(coords={"region": regions, "product": products}) as model:
        effect = pm.Normal("effect", 0.0, 2.0, dims=("region", "product"))
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", effect[region, product], sigma, observed=y)
    return model
