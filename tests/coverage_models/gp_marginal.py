"""Gaussian process regression: pm.gp.Marginal (ExpQuad, lengthscale and amplitude priors) on
40 points with Normal noise. The reference is PyMC's own NUTS: the numpyro path compiles
PyTensor's JAX program without mpi_pymc's rewrites, and on the pymc 5 stack its gradient with
respect to the lengthscale is wrong under jit (``graph_rewrites.exact_square_distances``); its
chains disagreed (R-hat 2.9-3.8)."""

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
