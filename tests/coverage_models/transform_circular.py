"""Circular transform: a VonMises location (posterior well inside (-pi, pi))."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1606)
    angles = rng.vonmises(1.0, 4.0, size=80)
    with pm.Model() as model:
        mu = pm.VonMises("mu", mu=0.0, kappa=0.5)
        kappa = pm.HalfNormal("kappa", 10.0)
        pm.VonMises("angles", mu=mu, kappa=kappa, observed=angles)
    return model
