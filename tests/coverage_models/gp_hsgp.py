"""Hilbert-space GP approximation: pm.gp.HSGP (m = 20 basis functions, ExpQuad) on 100 points,
Normal noise."""

import numpy as np
import pymc as pm


def build_model():
    rng = np.random.default_rng(3704)
    x = np.linspace(0.0, 10.0, 100)
    y = np.sin(x) + 0.5 * np.cos(0.5 * x) + rng.normal(0.0, 0.3, 100)
    coords = {"obs": np.arange(100), "basis": np.arange(20)}
    with pm.Model(coords=coords) as model:
        ell = pm.Gamma("ell", 4.0, 2.0)
        eta = pm.HalfNormal("eta", 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        cov = eta**2 * pm.gp.cov.ExpQuad(1, ls=ell)
        gp = pm.gp.HSGP(m=[20], c=1.5, cov_func=cov)
        f = gp.prior("f", X=x[:, None], hsgp_coeffs_dims="basis", dims="obs")
        pm.Normal("y", mu=f, sigma=sigma, observed=y, dims="obs")
    return model
