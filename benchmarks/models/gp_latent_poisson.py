"""A latent Gaussian process under Poisson counts: ``pm.gp.Latent`` (ExpQuad) on 40 points.

Non-centred (PyMC's default, ``f_rotated_``) unless ``MPI_PYMC_GP_CENTRED=1``: then ``f`` is
sampled directly from its MvNormal prior (``reparameterize=False``), the funnel between the
amplitude ``eta`` and ``f`` that NUTS cannot cross with one step size. The data come from a
fixed seed, so every rank builds the same model.

Run: ``mpirun -n 2 python -m mpi_pymc run benchmarks/models/gp_latent_poisson.py``
"""

import os

import numpy as np
import pymc as pm


def build_model() -> pm.Model:
    centred = os.environ.get("MPI_PYMC_GP_CENTRED", "0") == "1"
    n = 40
    rng = np.random.default_rng(20261209)
    x = np.linspace(0.0, 10.0, n)
    counts = rng.poisson(np.exp(0.5 + np.sin(0.6 * x)))
    with pm.Model(coords={"obs": np.arange(n)}) as model:
        ell = pm.Gamma("ell", 6.0, 3.0)
        eta = pm.HalfNormal("eta", 1.0)
        intercept = pm.Normal("intercept", 0.5, 1.0)
        gp = pm.gp.Latent(cov_func=eta**2 * pm.gp.cov.ExpQuad(1, ls=ell))
        f = gp.prior("f", X=x[:, None], dims="obs", reparameterize=not centred)
        pm.Poisson("y", mu=pm.math.exp(intercept + f), observed=counts, dims="obs")
    return model
