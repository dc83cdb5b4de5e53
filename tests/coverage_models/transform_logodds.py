"""Logodds transform: Beta-distributed success probabilities of binomial groups."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1602)
    trials = np.array([40, 60, 50, 30])
    successes = rng.binomial(trials, [0.2, 0.5, 0.7, 0.4])
    with pm.Model(coords={"group": ["a", "b", "c", "d"]}) as model:
        p = pm.Beta("p", 2.0, 2.0, dims="group")
        pm.Binomial("successes", n=trials, p=p, observed=successes, dims="group")
    return model
