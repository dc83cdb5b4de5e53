"""Zero-sum transform: ZeroSumNormal group effects around an intercept."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(1608)
    effects = np.array([-1.0, 0.0, 0.4, 0.6])
    group = np.tile(np.arange(4), 20)
    y = rng.normal(2.0 + effects[group], 1.0)
    with pm.Model(coords={"group": ["g1", "g2", "g3", "g4"]}) as model:
        intercept = pm.Normal("intercept", 0.0, 5.0)
        effect = pm.ZeroSumNormal("effect", sigma=2.0, dims="group")
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", intercept + effect[group], sigma, observed=y)
    return model
