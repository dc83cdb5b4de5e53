"""Deterministics: scalar, vector (with dims) and 2-D derived quantities."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1632)
    x = np.linspace(-1.0, 1.0, 40)
    y = rng.normal(0.3 + 1.2 * x, 0.4)
    with pm.Model(coords={"point": ["left", "middle", "right"], "bound": ["lo", "hi"]}) as model:
        alpha = pm.Normal("alpha", 0.0, 2.0)
        beta = pm.Normal("beta", 0.0, 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Deterministic("log_sigma", pm.math.log(sigma))
        at = np.array([-1.0, 0.0, 1.0])
        line = pm.Deterministic("line", alpha + beta * at, dims="point")
        pm.Deterministic(
            "band", pm.math.stack([line - sigma, line + sigma], axis=1), dims=("point", "bound")
        )
        pm.Normal("y", alpha + beta * x, sigma, observed=y)
    return model
