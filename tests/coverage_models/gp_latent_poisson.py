"""A latent Gaussian process under counts: pm.gp.Latent (ExpQuad, PyMC's default non-centred
``f_rotated_``) on 30 points with a Poisson likelihood. The reference is PyMC's own NUTS, for
the reason ``gp_marginal.py`` gives."""

import numpy as np
import pymc as pm

REFERENCE_SAMPLER = "pymc"


def build_model():
    rng = np.random.default_rng(3708)
    x = np.linspace(0.0, 10.0, 30)
    counts = rng.poisson(np.exp(1.0 + np.sin(0.6 * x)))
    with pm.Model(coords={"obs": np.arange(30)}) as model:
        ell = pm.Gamma("ell", 6.0, 3.0)
        eta = pm.HalfNormal("eta", 1.0)
        intercept = pm.Normal("intercept", 1.0, 1.0)
        gp = pm.gp.Latent(cov_func=eta**2 * pm.gp.cov.ExpQuad(1, ls=ell))
        f = gp.prior("f", X=x[:, None], dims="obs")
        pm.Poisson("y", mu=pm.math.exp(intercept + f), observed=counts, dims="obs")
    return model
