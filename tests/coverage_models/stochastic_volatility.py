"""Stochastic volatility: a GaussianRandomWalk of log volatility and StudentT returns over 100
steps (PyMC's stochastic-volatility example, smaller)."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(3705)
    steps = 100
    log_vol = np.cumsum(rng.normal(0.0, 0.15, steps)) - 4.0
    returns = np.exp(log_vol) * rng.standard_t(6.0, steps)
    with pm.Model(coords={"time": np.arange(steps)}) as model:
        step_size = pm.Exponential("step_size", 10.0)
        volatility = pm.GaussianRandomWalk(
            "volatility", sigma=step_size, init_dist=pm.Normal.dist(-4.0, 1.0), dims="time"
        )
        nu = pm.Exponential("nu", 0.1)
        pm.StudentT(
            "returns", nu=nu, lam=pm.math.exp(-2.0 * volatility), observed=returns, dims="time"
        )
    return model
