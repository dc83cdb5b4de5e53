"""Hierarchical (non-centred) group means with string coords and a Deterministic."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1620)
    teams = ["ajax", "benfica", "celtic", "dynamo", "everton", "fiorentina"]
    theta = rng.normal(1.0, 0.7, size=len(teams))
    team = np.repeat(np.arange(len(teams)), 12)
    y = rng.normal(theta[team], 1.0)
    with pm.Model(coords={"team": teams}) as model:
        mu = pm.Normal("mu", 0.0, 3.0)
        tau = pm.HalfNormal("tau", 1.0)
        offset = pm.Normal("offset", 0.0, 1.0, dims="team")
        theta = pm.Deterministic("theta", mu + tau * offset, dims="team")
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", theta[team], sigma, observed=y)
    return model
