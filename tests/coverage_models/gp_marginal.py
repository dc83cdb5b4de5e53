"""Gaussian process regression: pm.gp.Marginal (ExpQuad, lengthscale and amplitude priors) on
40 points with Normal noise. The reference is PyMC's own NUTS: the numpyro path runs PyTensor's
JAX program without mpi_pymc's rewrites, whose GP gradient XLA can get wrong under jit
(``graph_rewrites.exact_square_distances``: 13.4 off on the survey's 8-point model; on this
model it agreed with PyMC's at 5 jittered points, and a numpyro run gave r_hat 1.00)."""

import numpy as np
import pymc as pm

REFERENCE_SAMPLER = "pymc"


def build_model():
    rng = np.random.default_rng(3707)
    x = np.linspace(0.0, 10.0, 40)
    y = np.sin(x) + 0.5 * np.cos(0.5 * x) + rng.normal(0.0, 0.3, 40)
    with pm.Model(coords={"obs": np.arange(40)}) as model:
        ell = pm.Gamma("ell", 4.0, 2.0)
        eta = pm.HalfNormal("eta", 2.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        gp = pm.gp.Marginal(cov_func=eta**2 * pm.gp.cov.ExpQuad(1, ls=ell))
        gp.marginal_likelihood("y", X=x[:, None], y=y, sigma=sigma, dims="obs")
    return model
