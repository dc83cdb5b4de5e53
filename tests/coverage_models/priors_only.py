"""A model with priors only (no observed data)."""

import pymc as pm


def build_model():
    with pm.Model(coords={"k": ["first", "second", "third"]}) as model:
        pm.Normal("location", 1.0, 2.0, dims="k")
        pm.HalfNormal("scale", 1.5)
        pm.Beta("share", 3.0, 5.0)
        pm.Gamma("rate", alpha=4.0, beta=2.0)
    return model
