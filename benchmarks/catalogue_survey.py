"""Which of PyMC's other distributions, GPs and linear-algebra ops the project cannot run.

``op_survey.py`` covers the continuous univariate distributions, their CDFs, ``Censored`` and
``Truncated``. This survey covers the rest of ``pm.distributions.__all__`` (multivariate, time
series, every discrete distribution as an observed likelihood, mixtures, ``CustomDist``...),
the ``pm.gp`` classes, and Potentials over the linear-algebra ops their graphs use: one small
model per case, compiled by the project's own path (``mpi_pymc.model.compile.compile_model``, our
rewrites and JAX translations included), its log-density and gradient evaluated at the initial
point and at a jittered point, and compared with PyMC's own compiled ``logp``/``dlogp`` there.

Statuses: ok; missing: OPS (no JAX implementation, found as op_survey finds them, or an op whose
translation raises NotImplementedError when traced); error: one line (anything else, a value or
gradient that differs from PyMC's included). A distribution exported by PyMC with no case here
or in op_survey is listed at the end (``NOT_MODELLED`` says why the few left out are).

    PYTHONPATH=. .venv/bin/python benchmarks/catalogue_survey.py [--only A,B] [--json OUT.json]
"""

# ruff: noqa: E501  (the case tables: one case a line reads better than one wrapped)

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # op_survey, beside this file

import jax  # noqa: E402
import pymc as pm  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from op_survey import continuous_distributions, missing_ops  # noqa: E402

# Exported names that are not distributions a model uses as such.
NOT_MODELLED = {
    "Continuous": "base class",
    "Discrete": "base class",
    "Distribution": "base class",
    "SymbolicRandomVariable": "base class",
    "Lognormal": "alias of LogNormal (op_survey)",
    "DensityDist": "alias of CustomDist",
    "Simulator": "no log-density (ABC only; pm.sample refuses it too)",
    "Censored": "op_survey",
    "Truncated": "op_survey",
}
# Agreement with PyMC's log-density, relative to max(1, |value|): translation.RTOL's float64.
RTOL = 1e-6

CASES: dict[str, tuple[tuple[str, ...], Callable[[], pm.Model]]] = {}


def case(name: str, *covers: str):
    """Register a model builder; ``covers``: the exported names it exercises (default: the
    case's name up to a parenthesis)."""

    def register(build):
        CASES[name] = (covers or (name.split("(")[0],), build)
        return build

    return register


RNG = np.random.default_rng(20261207)
K3 = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.8]])  # fixed SPD matrices
K2 = np.array([[1.0, 0.4], [0.4, 0.7]])


def grid_adjacency(rows: int, cols: int) -> np.ndarray:
    """Rook adjacency of a rows x cols grid (the issue's 5 x 4 disease map)."""
    n = rows * cols
    w = np.zeros((n, n))
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                w[i, i + 1] = w[i + 1, i] = 1
            if r + 1 < rows:
                w[i, i + cols] = w[i + cols, i] = 1
    return w


# --- multivariate ---------------------------------------------------------------------------
def _mv_observed(make_dist) -> pm.Model:
    y = RNG.multivariate_normal([0.5, -1.0, 2.0], K3, size=8)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 3, shape=3)
        s = pm.HalfNormal("s", 1.0)
        make_dist(mu, s, y)
    return model


@case("MvNormal(cov)")
def _():
    return _mv_observed(lambda mu, s, y: pm.MvNormal("y", mu, cov=s**2 * K3, observed=y))


@case("MvNormal(chol)", "MvNormal", "LKJCholeskyCov")
def _():
    y = RNG.multivariate_normal([0.5, -1.0, 2.0], K3, size=8)
    with pm.Model() as model:
        chol, _, _ = pm.LKJCholeskyCov("c", n=3, eta=2.0, sd_dist=pm.Exponential.dist(1.0))
        mu = pm.Normal("mu", 0, 3, shape=3)
        pm.MvNormal("y", mu, chol=chol, observed=y)
    return model


@case("MvNormal(tau)")
def _():
    tau = np.linalg.inv(K3)
    return _mv_observed(lambda mu, s, y: pm.MvNormal("y", mu, tau=tau / s**2, observed=y))


@case("MvStudentT(scale)")
def _():
    def make(mu, s, y):
        nu = pm.Gamma("nu", 4, 0.5)
        pm.MvStudentT("y", nu=nu, mu=mu, scale=s**2 * K3, observed=y)

    return _mv_observed(make)


@case("MvStudentT(chol)")
def _():
    chol = np.linalg.cholesky(K3)
    return _mv_observed(lambda mu, s, y: pm.MvStudentT("y", 5.0, mu=mu, chol=s * chol, observed=y))


@case("MvStudentT(tau)")
def _():
    tau = np.linalg.inv(K3)
    return _mv_observed(lambda mu, s, y: pm.MvStudentT("y", 5.0, mu=mu, tau=tau / s**2, observed=y))


@case("Dirichlet")
def _():
    with pm.Model() as model:
        a = pm.Gamma("a", 2, 1, shape=3)
        pm.Dirichlet("w", a=np.ones(3))
        pm.Dirichlet("y", a=a, observed=RNG.dirichlet([2, 3, 4], size=6))
    return model


@case("Multinomial")
def _():
    with pm.Model() as model:
        p = pm.Dirichlet("p", a=np.ones(3))
        pm.Multinomial("y", n=10, p=p, observed=np.array([[2, 3, 5], [4, 4, 2], [1, 6, 3]]))
    return model


@case("DirichletMultinomial")
def _():
    with pm.Model() as model:
        a = pm.Gamma("a", 2, 1, shape=3)
        pm.DirichletMultinomial("y", n=10, a=a, observed=np.array([[2, 3, 5], [4, 4, 2]]))
    return model


@case("OrderedMultinomial")
def _():
    with pm.Model() as model:
        eta = pm.Normal("eta", 0, 1)
        cut = pm.Normal(
            "cut", np.array([-1.0, 1.0]), 1, transform=pm.distributions.transforms.ordered
        )
        pm.OrderedMultinomial("y", eta=eta, cutpoints=cut, n=10, observed=np.array([[3, 4, 3]]))
    return model


@case("LKJCorr")
def _():
    with pm.Model() as model:
        pm.LKJCorr("r", n=3, eta=2.0)
    return model


@case("LKJCholeskyCov")
def _():
    with pm.Model() as model:
        pm.LKJCholeskyCov("c", n=4, eta=1.5, sd_dist=pm.HalfNormal.dist(1.0, shape=4))
    return model


@case("Wishart")
def _():
    with pm.Model() as model:
        s = pm.HalfNormal("s", 1.0)
        pm.Wishart("y", nu=5, V=s * K3, observed=K3 * 4.0)
    return model


def _kronecker(kind: str) -> pm.Model:
    y = RNG.normal(size=6)
    with pm.Model() as model:
        s = pm.HalfNormal("s", 1.0)
        noise = pm.HalfNormal("noise", 1.0)
        if kind == "covs":
            pm.KroneckerNormal("y", mu=np.zeros(6), covs=[s**2 * K3, K2], sigma=noise, observed=y)
        elif kind == "chols":
            chols = [s * np.linalg.cholesky(K3), np.linalg.cholesky(K2)]
            pm.KroneckerNormal("y", mu=np.zeros(6), chols=chols, observed=y)
        else:
            evds = [np.linalg.eigh(K3), np.linalg.eigh(K2)]
            mu = pm.Normal("mu", 0, 1)
            pm.KroneckerNormal("y", mu=mu * np.ones(6), evds=evds, sigma=noise, observed=y)
    return model


@case("KroneckerNormal(covs)")
def _():
    return _kronecker("covs")


@case("KroneckerNormal(chols)")
def _():
    return _kronecker("chols")


@case("KroneckerNormal(evds)")
def _():
    return _kronecker("evds")


@case("MatrixNormal(cov)")
def _():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 2, shape=(3, 2))
        s = pm.HalfNormal("s", 1.0)
        pm.MatrixNormal("y", mu=mu, rowcov=s**2 * K3, colcov=K2, observed=RNG.normal(size=(3, 2)))
    return model


@case("MatrixNormal(chol)")
def _():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 2, shape=(3, 2))
        s = pm.HalfNormal("s", 1.0)
        rowchol, colchol = s * np.linalg.cholesky(K3), np.linalg.cholesky(K2)
        y = RNG.normal(size=(3, 2))
        pm.MatrixNormal("y", mu=mu, rowchol=rowchol, colchol=colchol, observed=y)
    return model


def _spatial(prior) -> pm.Model:
    w = grid_adjacency(5, 4)
    expected = RNG.uniform(5, 15, size=20)
    with pm.Model() as model:
        b0 = pm.Normal("b0", 0, 1)
        phi = prior(w)
        pm.Poisson("y", expected * pm.math.exp(b0 + phi), observed=RNG.poisson(expected))
    return model


@case("CAR")
def _():
    def prior(w):
        alpha = pm.Beta("alpha", 2, 2)
        tau = pm.Gamma("tau", 2, 2)
        return pm.CAR("phi", mu=np.zeros(20), W=w, alpha=alpha, tau=tau)

    return _spatial(prior)


@case("ICAR")
def _():
    return _spatial(lambda w: pm.ICAR("phi", W=w, sigma=pm.HalfNormal("sigma", 1.0)))


@case("StickBreakingWeights")
def _():
    with pm.Model() as model:
        alpha = pm.Gamma("alpha", 2, 1)
        pm.StickBreakingWeights("w", alpha=alpha, K=5)
    return model


@case("ZeroSumNormal")
def _():
    with pm.Model() as model:
        s = pm.HalfNormal("s", 1.0)
        z = pm.ZeroSumNormal("z", sigma=s, shape=(3, 4), n_zerosum_axes=2)
        pm.Normal("y", z.sum(axis=1), 1.0, observed=np.array([0.5, -0.2, 0.1]))
    return model


@case("DiracDelta")
def _():
    with pm.Model() as model:
        pm.Normal("x", 0, 1)
        pm.DiracDelta("y", 3.0, observed=np.array([3.0, 3.0]))
    return model


@case("CustomDist(logp)")
def _():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.CustomDist("y", mu, logp=lambda v, m: -0.5 * (v - m) ** 2, observed=RNG.normal(size=5))
    return model


@case("CustomDist(dist)")
def _():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.CustomDist("y", mu, dist=lambda m, size: pt.exp(pm.Normal.dist(m, 1, size=size)),
                      observed=RNG.lognormal(size=5))  # fmt: skip
    return model


# --- time series ----------------------------------------------------------------------------
@case("AR")
def _():
    with pm.Model() as model:
        rho = pm.Normal("rho", 0, 0.5, shape=3)
        sigma = pm.HalfNormal("sigma", 1.0)
        init = pm.Normal.dist(0, 1, shape=2)
        pm.AR("y", rho=rho, sigma=sigma, constant=True, init_dist=init,
              observed=np.cumsum(RNG.normal(size=15)) * 0.1)  # fmt: skip
    return model


@case("GaussianRandomWalk")
def _():
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.GaussianRandomWalk("x", sigma=sigma, init_dist=pm.Normal.dist(0, 1), steps=10)
    return model


@case("RandomWalk")
def _():
    with pm.Model() as model:
        nu = pm.Gamma("nu", 4, 0.5)
        pm.RandomWalk("x", innovation_dist=pm.StudentT.dist(nu=nu, mu=0, sigma=1), init_dist=pm.Normal.dist(0, 1),
                      steps=10)  # fmt: skip
    return model


@case("MvGaussianRandomWalk")
def _():
    with pm.Model() as model:
        chol, _, _ = pm.LKJCholeskyCov("c", n=2, eta=2.0, sd_dist=pm.Exponential.dist(1.0))
        pm.MvGaussianRandomWalk("x", mu=np.zeros(2), chol=chol, steps=8,
                                init_dist=pm.MvNormal.dist(np.zeros(2), np.eye(2)))  # fmt: skip
    return model


@case("MvStudentTRandomWalk")
def _():
    with pm.Model() as model:
        pm.MvStudentTRandomWalk("x", nu=5, mu=np.zeros(2), scale=K2, steps=8,
                                init_dist=pm.MvNormal.dist(np.zeros(2), np.eye(2)))  # fmt: skip
    return model


@case("EulerMaruyama")
def _():
    with pm.Model() as model:
        theta = pm.HalfNormal("theta", 1.0)
        pm.EulerMaruyama("x", dt=0.1, sde_fn=lambda x, th: (-th * x, 0.5), sde_pars=(theta,),
                         init_dist=pm.Normal.dist(0, 1), steps=10)  # fmt: skip
    return model


@case("GARCH11")
def _():
    with pm.Model() as model:
        omega = pm.HalfNormal("omega", 0.5)
        alpha = pm.Beta("alpha", 2, 8)
        beta = pm.Beta("beta", 8, 2)
        pm.GARCH11("r", omega=omega, alpha_1=alpha, beta_1=beta, initial_vol=0.5,
                   observed=RNG.normal(0, 0.5, size=20))  # fmt: skip
    return model


# --- discrete, as observed likelihoods ------------------------------------------------------
def _observed(make, data) -> pm.Model:
    with pm.Model() as model:
        make(np.asarray(data))
    return model


COUNTS = [0, 0, 1, 2, 3, 0, 5, 1, 2, 7]
BINARY = [0, 1, 1, 0, 1, 1, 1, 0]


def _discrete_cases():
    p = lambda: pm.Beta("p", 2, 2)
    rate = lambda: pm.Gamma("mu", 2, 1)
    psi = lambda: pm.Beta("psi", 2, 2)
    table = {
        "Bernoulli(p)": (lambda y: pm.Bernoulli("y", p=p(), observed=y), BINARY),
        "Bernoulli(logit_p)": (lambda y: pm.Bernoulli("y", logit_p=pm.Normal("eta", 0, 1), observed=y), BINARY),
        "Binomial(p)": (lambda y: pm.Binomial("y", n=8, p=p(), observed=y), COUNTS[:8]),
        "Binomial(logit_p)": (lambda y: pm.Binomial("y", n=8, logit_p=pm.Normal("eta", 0, 1), observed=y), COUNTS[:8]),
        "BetaBinomial": (lambda y: pm.BetaBinomial("y", alpha=rate(), beta=pm.Gamma("b", 2, 1), n=8, observed=y), COUNTS[:8]),
        "Poisson": (lambda y: pm.Poisson("y", rate(), observed=y), COUNTS),
        "NegativeBinomial(mu,alpha)": (lambda y: pm.NegativeBinomial("y", mu=rate(), alpha=pm.Gamma("a", 2, 1), observed=y), COUNTS),
        "NegativeBinomial(n,p)": (lambda y: pm.NegativeBinomial("y", n=pm.Gamma("n", 2, 1), p=p(), observed=y), COUNTS),
        "Geometric": (lambda y: pm.Geometric("y", p=p(), observed=y), np.array(COUNTS) + 1),
        "HyperGeometric": (lambda y: (pm.Normal("x", 0, 1), pm.HyperGeometric("y", N=20, k=8, n=6, observed=y)), [0, 2, 3, 6]),
        "DiscreteUniform": (lambda y: (pm.Normal("x", 0, 1), pm.DiscreteUniform("y", 0, 7, observed=y)), COUNTS[:8]),
        "DiscreteWeibull": (lambda y: pm.DiscreteWeibull("y", q=p(), beta=pm.Gamma("b", 2, 1), observed=y), COUNTS),
        "Categorical(p)": (lambda y: pm.Categorical("y", p=pm.Dirichlet("w", np.ones(4)), observed=y), [0, 1, 3, 3, 2]),
        "Categorical(logit_p)": (lambda y: pm.Categorical("y", logit_p=pm.Normal("eta", 0, 1, shape=4), observed=y), [0, 1, 3, 3, 2]),
        "ZeroInflatedPoisson": (lambda y: pm.ZeroInflatedPoisson("y", psi=psi(), mu=rate(), observed=y), COUNTS),
        "ZeroInflatedBinomial": (lambda y: pm.ZeroInflatedBinomial("y", psi=psi(), n=8, p=p(), observed=y), COUNTS[:8]),
        "ZeroInflatedNegativeBinomial": (lambda y: pm.ZeroInflatedNegativeBinomial("y", psi=psi(), mu=rate(), alpha=pm.Gamma("a", 2, 1), observed=y), COUNTS),
        "HurdlePoisson": (lambda y: pm.HurdlePoisson("y", psi=psi(), mu=rate(), observed=y), COUNTS),
        "HurdleNegativeBinomial": (lambda y: pm.HurdleNegativeBinomial("y", psi=psi(), mu=rate(), alpha=pm.Gamma("a", 2, 1), observed=y), COUNTS),
        "HurdleGamma": (lambda y: pm.HurdleGamma("y", psi=psi(), alpha=rate(), beta=pm.Gamma("b", 2, 1), observed=y), [0.0, 0.5, 1.2, 0.0, 3.1]),
        "HurdleLogNormal": (lambda y: pm.HurdleLogNormal("y", psi=psi(), mu=pm.Normal("m", 0, 1), sigma=pm.HalfNormal("s", 1), observed=y), [0.0, 0.5, 1.2, 0.0, 3.1]),
    }  # fmt: skip
    for name, (make, data) in table.items():
        case(name)(lambda make=make, data=data: _observed(make, data))


_discrete_cases()


def _ordered(cls) -> pm.Model:
    with pm.Model() as model:
        eta = pm.Normal("eta", 0, 1)
        cut = pm.Normal(
            "cut", np.array([-1.0, 0.0, 1.0]), 1, transform=pm.distributions.transforms.ordered
        )
        cls("y", eta, cut, observed=np.array([0, 1, 1, 2, 3, 3, 2]))
    return model


@case("OrderedLogistic")
def _():
    return _ordered(pm.OrderedLogistic)


@case("OrderedProbit")
def _():
    return _ordered(pm.OrderedProbit)


# --- mixtures -------------------------------------------------------------------------------
Y_BIMODAL = np.concatenate([RNG.normal(-2, 1, 10), RNG.normal(2, 1, 10)])


@case("Mixture(Normal list)", "Mixture")
def _():
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        mu = pm.Normal("mu", [-2.0, 2.0], 1, transform=pm.distributions.transforms.ordered)
        comps = [pm.Normal.dist(mu[0], 1), pm.Normal.dist(mu[1], 1)]
        pm.Mixture("y", w, comps, observed=Y_BIMODAL)
    return model


@case("Mixture(batched StudentT)", "Mixture")
def _():
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        mu = pm.Normal("mu", [-2.0, 2.0], 1, transform=pm.distributions.transforms.ordered)
        pm.Mixture("y", w, pm.StudentT.dist(nu=4, mu=mu, sigma=1), observed=Y_BIMODAL)
    return model


@case("Mixture(Gamma+LogNormal)", "Mixture")
def _():
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        a = pm.Gamma("a", 2, 1)
        comps = [pm.Gamma.dist(a, 1), pm.LogNormal.dist(pm.Normal("m", 0, 1), 0.5)]
        pm.Mixture("y", w, comps, observed=np.abs(Y_BIMODAL) + 0.1)
    return model


@case("Mixture(Poisson)", "Mixture")
def _():
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        mu = pm.Gamma("mu", 2, 0.5, shape=2)
        pm.Mixture("y", w, pm.Poisson.dist(mu), observed=np.array(COUNTS))
    return model


@case("Mixture(MvNormal)", "Mixture")
def _():
    y = np.concatenate([RNG.normal(-1, 1, (5, 2)), RNG.normal(1, 1, (5, 2))])
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        mu = pm.Normal("mu", 0, 2, shape=(2, 2))
        comps = [pm.MvNormal.dist(mu[0], K2), pm.MvNormal.dist(mu[1], np.eye(2))]
        pm.Mixture("y", w, comps, observed=y)
    return model


@case("NormalMixture")
def _():
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(2))
        mu = pm.Normal("mu", [-2.0, 2.0], 1, transform=pm.distributions.transforms.ordered)
        pm.NormalMixture("y", w, mu, sigma=pm.HalfNormal("s", 1, shape=2), observed=Y_BIMODAL)
    return model


# --- Gaussian processes ---------------------------------------------------------------------
X = np.linspace(0, 5, 8)[:, None]
Y_GP = np.sin(X[:, 0]) + 0.1 * RNG.normal(size=8)


def _gp(body) -> pm.Model:
    with pm.Model() as model:
        ls = pm.Gamma("ls", 4, 4)
        eta = pm.HalfNormal("eta", 1.0)
        body(eta**2 * pm.gp.cov.ExpQuad(1, ls=ls), ls)
    return model


@case("gp.Latent", "Latent")
def _():
    def body(cov, _):
        f = pm.gp.Latent(cov_func=cov).prior("f", X=X)
        pm.Poisson("y", pm.math.exp(f), observed=np.array(COUNTS[:8]))

    return _gp(body)


@case("gp.Marginal", "Marginal")
def _():
    return _gp(lambda cov, _: pm.gp.Marginal(cov_func=cov).marginal_likelihood(
        "y", X=X, y=Y_GP, sigma=pm.HalfNormal("sigma", 1.0)))  # fmt: skip


@case("gp.TP", "TP")
def _():
    return _gp(lambda cov, _: pm.gp.TP(scale_func=cov, nu=5).prior("f", X=X))


def _approx(kind: str):
    gp = getattr(pm.gp, kind)
    return _gp(lambda cov, _: gp(cov_func=cov, approx="FITC").marginal_likelihood(
        "y", X=X, Xu=X[::2], y=Y_GP, sigma=pm.HalfNormal("sigma", 1.0)))  # fmt: skip


@case("gp.MarginalSparse", "MarginalSparse")
def _():
    return _approx("MarginalSparse")


@case("gp.MarginalApprox(VFE)", "MarginalApprox")
def _():
    return _gp(lambda cov, _: pm.gp.MarginalApprox(cov_func=cov, approx="VFE").marginal_likelihood(
        "y", X=X, Xu=X[::2], y=Y_GP, sigma=pm.HalfNormal("sigma", 1.0)))  # fmt: skip


@case("gp.HSGP", "HSGP")
def _():
    def body(cov, _):
        f = pm.gp.HSGP(m=[10], c=1.5, cov_func=cov).prior("f", X=X)
        pm.Normal("y", f, 0.2, observed=Y_GP)

    return _gp(body)


@case("gp.HSGPPeriodic", "HSGPPeriodic")
def _():
    def body(_, ls):
        cov = pm.gp.cov.Periodic(1, period=3.0, ls=ls)
        f = pm.gp.HSGPPeriodic(m=8, scale=pm.HalfNormal("scale", 1.0), cov_func=cov).prior("f", X=X)
        pm.Normal("y", f, 0.2, observed=Y_GP)

    return _gp(body)


X1, X2 = np.linspace(0, 1, 3)[:, None], np.linspace(0, 2, 4)[:, None]


@case("gp.LatentKron", "LatentKron")
def _():
    def body(cov, ls):
        gp = pm.gp.LatentKron(cov_funcs=[cov, pm.gp.cov.Matern52(1, ls=ls)])
        f = gp.prior("f", Xs=[X1, X2])
        pm.Normal("y", f, 0.3, observed=RNG.normal(size=12))

    return _gp(body)


@case("gp.MarginalKron", "MarginalKron")
def _():
    def body(cov, ls):
        gp = pm.gp.MarginalKron(cov_funcs=[cov, pm.gp.cov.Matern52(1, ls=ls)])
        gp.marginal_likelihood("y", Xs=[X1, X2], y=RNG.normal(size=12),
                               sigma=pm.HalfNormal("sigma", 1.0))  # fmt: skip

    return _gp(body)


# --- linear algebra, as Potentials over a free SPD matrix -------------------------------------
def _linalg(term) -> pm.Model:
    with pm.Model() as model:
        a = pm.Normal("a", 0, 1, shape=(3, 3), initval=0.3 * RNG.normal(size=(3, 3)))
        spd = a @ a.T + 2.0 * pt.eye(3)
        b = pm.Normal("b", 0, 1, shape=3)
        pm.Potential("term", term(spd, a, b))
    return model


def _plain_eigvalsh(s):
    """``eigvalsh(s, None)``, spelled so that pytensor 2 (which wants NoneConst) accepts it."""
    from pytensor.tensor.slinalg import Eigvalsh
    from pytensor.tensor.type_other import NoneConst

    return Eigvalsh().make_node(s, NoneConst).outputs[0]


_LINALG = {
    "cholesky": lambda s, a, b: pt.log(pt.diag(pt.linalg.cholesky(s))).sum(),
    "slogdet": lambda s, a, b: -pt.linalg.slogdet(s)[1],
    "det": lambda s, a, b: -pt.log(pt.linalg.det(s)),
    "inv": lambda s, a, b: -0.5 * b @ pt.linalg.inv(s) @ b,
    "solve": lambda s, a, b: -0.5 * b @ pt.linalg.solve(s, b),
    "solve_triangular": lambda s, a, b: -0.5 * pt.sqr(
        pt.linalg.solve_triangular(pt.linalg.cholesky(s), b, lower=True)).sum(),
    "cho_solve": lambda s, a, b: -0.5 * b @ pt.linalg.cho_solve((pt.linalg.cholesky(s), True), b),
    "eigh": lambda s, a, b: -pt.linalg.eigh(s)[0].sum() - pt.sqr(pt.linalg.eigh(s)[1] @ b).sum(),
    "eigvalsh": lambda s, a, b: -0.1 * pt.sqr(_plain_eigvalsh(s)).sum(),
    "eigvalsh(a,b)": lambda s, a, b: -0.1 * pt.sqr(pt.linalg.eigvalsh(s, pt.as_tensor(K3))).sum(),
    "kron": lambda s, a, b: -0.05 * pt.sqr(pt.linalg.kron(a, s)).sum(),
    "expm": lambda s, a, b: -0.1 * pt.sqr(pt.linalg.expm(0.3 * a)).sum(),
    "pinv": lambda s, a, b: -0.5 * b @ pt.linalg.pinv(s) @ b,
}  # fmt: skip
for _name, _term in _LINALG.items():
    case(f"linalg.{_name}", f"linalg.{_name}")(lambda term=_term: _linalg(term))


# --- the survey -------------------------------------------------------------------------------
def _jax_missing(model) -> set[str]:
    """Ops of the model's log-density with no JAX translation (op_survey's probe, over the
    graph the project translates)."""
    from mpi_pymc.model import compile as project

    logp = model.logp()
    args = (list(model.value_vars), [logp], project.data_inputs([logp]))
    if not hasattr(project, "program_graph"):  # a checkout before #37 (the "before" survey)
        from mpi_pymc.model import jax_ops

        jax_ops.register()
        return missing_ops(project.jax_graph(*args))
    return missing_ops(project.program_graph(*args, float_dtype=np.float64))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _compare(model, compiled) -> str | None:
    """None when the JAX log-density and gradient equal PyMC's at the initial point and at a
    jittered point; else what differs, in one line."""
    # FAST_COMPILE: PyTensor's own implementation, no JAX, compiled in a fraction of the C
    # backend's time (as translation.check_log_density does); its missing stabilisations do not
    # matter at these moderate points.
    logp = model.compile_logp(mode="FAST_COMPILE")
    try:
        dlogp = model.compile_dlogp(mode="FAST_COMPILE")
    except Exception as err:  # noqa: BLE001 - no reference: pm.sample fails on this model too
        return f"PyMC's own gradient fails: {_one_line(err)}"
    value_and_grad = jax.jit(jax.value_and_grad(compiled.logdensity))
    jitter = np.random.default_rng(7).uniform(-0.5, 0.5, compiled.dimension)
    for where, flat in (
        ("initial", compiled.initial_flat),
        ("jittered", compiled.initial_flat + jitter),
    ):
        got, grad = value_and_grad(flat, compiled.data)
        point = dict(zip(compiled.value_names, compiled.unravel(flat), strict=True))
        ref, ref_grad = float(logp(point)), np.asarray(dlogp(point))
        got, grad = float(got), np.asarray(grad)
        if not (np.isfinite(got) and np.all(np.isfinite(grad))):
            if np.isfinite(ref) and np.all(np.isfinite(ref_grad)):
                return f"non-finite logp/grad at the {where} point (PyMC's finite: {ref:.6g})"
            continue
        scale = max(1.0, abs(ref))
        if abs(got - ref) > RTOL * scale:
            return f"logp {got:.10g} against PyMC's {ref:.10g} at the {where} point"
        worst = float(np.max(np.abs(grad - ref_grad), initial=0.0))
        if worst > RTOL * max(1.0, float(np.max(np.abs(ref_grad), initial=0.0))):
            return f"gradient off by {worst:.3g} from PyMC's at the {where} point"
    return None


def case_status(name: str) -> str:
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.translation import TranslationError

    try:
        model = CASES[name][1]()
    except Exception as err:  # noqa: BLE001 - PyMC refused the model itself
        return f"error: building the model: {_one_line(err)}"
    try:
        missing = _jax_missing(model)
    except Exception as err:  # noqa: BLE001
        return f"error: rewriting the graph: {_one_line(err)}"
    if missing:
        return "missing: " + ",".join(sorted(missing))
    try:
        compiled = compile_model(model)
    except TranslationError as err:  # the one line a user sees
        text = str(err)
        if "needs the PyTensor op '" in text:
            return "missing: " + text.split("needs the PyTensor op '")[1].split("'")[0]
        return f"error: {text[:240]}"
    except Exception as err:  # noqa: BLE001
        return f"error: {_one_line(err)}"
    try:
        differs = _compare(model, compiled)
    except NotImplementedError as err:
        return f"missing: ({_one_line(err)})"
    except Exception as err:  # noqa: BLE001
        return f"error: {_one_line(err)}"
    return f"error: {differs}" if differs else "ok"


def uncovered() -> list[str]:
    """Distributions PyMC exports that neither survey has a case for."""
    covered = {c for covers, _ in CASES.values() for c in covers} | set(continuous_distributions())
    exported = [n for n in pm.distributions.__all__ if isinstance(getattr(pm, n, None), type)]
    return sorted(set(exported) - covered - set(NOT_MODELLED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--json", type=Path, help="write the statuses here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    jax.config.update("jax_enable_x64", True)
    import mpi_pymc

    versions = f"pymc {pm.__version__}, pytensor {pytensor.__version__}, jax {jax.__version__}"
    print(f"{versions}, mpi_pymc {mpi_pymc.__version__}", flush=True)
    names = args.only.split(",") if args.only else list(CASES)
    statuses: dict[str, str] = {}
    start = time.perf_counter()
    for name in names:
        statuses[name] = case_status(name)
        print(f"{name:30s} {statuses[name]}", flush=True)
    counts = {
        k: sum(s.split(":")[0] == k for s in statuses.values()) for k in ("ok", "missing", "error")
    }
    print(f"{len(statuses)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"({time.perf_counter() - start:.0f} s)")
    if not args.only:
        left = uncovered()
        print("exported distributions without a case: " + (", ".join(left) if left else "none"))
    if args.json:
        args.json.write_text(
            json.dumps({"versions": versions, "counts": counts, "statuses": statuses}, indent=1)
            + "\n"
        )


if __name__ == "__main__":
    main()
