"""Simplex transform: Dirichlet weights of a multinomial."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1604)
    counts = rng.multinomial(200, [0.1, 0.2, 0.3, 0.4])
    with pm.Model(coords={"category": ["w", "x", "y", "z"]}) as model:
        w = pm.Dirichlet("w", a=np.ones(4), dims="category")
        pm.Multinomial("counts", n=200, p=w, observed=counts, dims="category")
    return model
