"""Which PyTensor ops in PyMC's continuous distributions have no JAX translation.

For every continuous distribution PyMC exports, translates with PyTensor's JAX backend, and
runs once, the log-density of a one-variable model, the logcdf, and pm.Censored and
pm.Truncated of it; parameters and data are shared variables, so that constant folding cannot
hide an op that a real model needs. Statuses: ok; nonfinite (ran, not finite: legitimately so
for Flat's and HalfFlat's improper cdf); n/a (PyMC defines no such graph); missing: OPS (no JAX
implementation); error: TYPE (anything else).

    .venv/bin/python benchmarks/op_survey.py                  # PyTensor's and PyMC's translations
    .venv/bin/python benchmarks/op_survey.py --with-mpi-pymc  # after model.jax_ops.register()
"""

import argparse
import inspect
from collections import defaultdict

import jax
import numpy as np
import pymc as pm
import pymc.sampling.jax  # noqa: F401  (PyMC's own JAX translations, as mpi_pymc loads them)
import pytensor
import pytensor.tensor as pt
from pymc.distributions.distribution import Distribution
from pytensor.compile import SharedVariable, mode
from pytensor.compile.builders import OpFromGraph
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.traversal import graph_inputs
from pytensor.link.jax.dispatch import jax_funcify
from pytensor.tensor.elemwise import Elemwise

KINDS = ("logp", "logcdf", "censored", "truncated")
REAL, POSITIVE, UNIT = (-1.0, 2.0), (0.5, 2.0), (0.2, 0.8)  # bounds inside the support
# fmt: off
CASES: dict[str, tuple[dict, tuple[float, float]]] = {  # evaluated mid-bounds
    "AsymmetricLaplace": (dict(b=1.0, kappa=1.5, mu=0.0), REAL),
    "Beta": (dict(alpha=2.0, beta=3.0), UNIT), "Cauchy": (dict(alpha=0.0, beta=1.0), REAL),
    "ChiSquared": (dict(nu=3.0), POSITIVE), "ExGaussian": (dict(mu=0.0, sigma=1.0, nu=1.0), REAL),
    "Exponential": (dict(lam=1.0), POSITIVE), "Flat": ({}, REAL),
    "Gamma": (dict(alpha=2.0, beta=1.0), POSITIVE), "Gumbel": (dict(mu=0.0, beta=1.0), REAL),
    "HalfCauchy": (dict(beta=1.0), POSITIVE), "HalfFlat": ({}, POSITIVE),
    "HalfNormal": (dict(sigma=1.0), POSITIVE), "HalfStudentT": (dict(nu=3.0, sigma=1.0), POSITIVE),
    "Interpolated": (dict(x_points=np.linspace(0, 1, 5), pdf_points=np.ones(5)), UNIT),
    "InverseGamma": (dict(alpha=3.0, beta=1.0), POSITIVE),
    "Kumaraswamy": (dict(a=2.0, b=3.0), UNIT), "Laplace": (dict(mu=0.0, b=1.0), REAL),
    "LogNormal": (dict(mu=0.0, sigma=1.0), POSITIVE), "Logistic": (dict(mu=0.0, s=1.0), REAL),
    "LogitNormal": (dict(mu=0.0, sigma=1.0), UNIT), "Moyal": (dict(mu=0.0, sigma=1.0), REAL),
    "Normal": (dict(mu=0.0, sigma=1.0), REAL), "Pareto": (dict(alpha=3.0, m=1.0), (1.5, 3.0)),
    "PolyaGamma": (dict(h=1.0, z=0.0), POSITIVE), "Rice": (dict(nu=1.0, sigma=1.0), POSITIVE),
    "SkewNormal": (dict(mu=0.0, sigma=1.0, alpha=2.0), REAL),
    "SkewStudentT": (dict(a=2.0, b=3.0), REAL), "StudentT": (dict(nu=3.0), REAL),
    "Triangular": (dict(lower=0.0, c=0.5, upper=1.0), UNIT),
    "TruncatedNormal": (dict(mu=0.0, sigma=1.0, lower=-1.5, upper=2.5), REAL),
    "Uniform": (dict(lower=0.0, upper=1.0), UNIT), "VonMises": (dict(mu=0.0, kappa=1.0), REAL),
    "Wald": (dict(mu=1.0, lam=1.0), POSITIVE), "Weibull": (dict(alpha=2.0, beta=1.0), POSITIVE),
}
# fmt: on


def continuous_distributions() -> list[str]:
    module = pm.distributions.continuous
    classes = {n: getattr(module, n) for n in getattr(module, "__all__", dir(module))}
    # ChiSquared and LogitNormal are factories: a ``dist`` that builds another distribution
    is_distribution = lambda c: issubclass(c, Distribution) or hasattr(c, "dist")
    return sorted(n for n, c in classes.items() if inspect.isclass(c) and is_distribution(c))


def missing_ops(fgraph) -> set[str]:
    """Every op (scalar ops inside Elemwise and Composite included) whose translation fails."""
    found: set[str] = set()
    for node in fgraph.toposort():
        op = node.op.scalar_op if isinstance(node.op, Elemwise) else node.op
        if getattr(op, "fgraph", None) is not None:  # Composite, Scan, OpFromGraph
            inner = op.fgraph
            if isinstance(op, OpFromGraph) and hasattr(inner, "clone"):
                # pytensor 2's JAX translation rewrites an OpFromGraph's inner graph first (a
                # Reshape's symbolic shape becomes a constant there): probe what it translates.
                # (pytensor 3's inner graphs are frozen, already rewritten.)
                inner = inner.clone()
                mode.JAX.optimizer.rewrite(inner)
            found |= missing_ops(inner)
            continue
        try:
            jax_funcify(op, node=node)
        except NotImplementedError:
            found.add(type(op).__name__)
    return found


def case_status(name: str, case: str) -> str:
    """Status of the JAX translation of one case, run at its test point."""
    try:
        inputs, output, values = build(name, case)
    except Exception as err:  # PyMC defines no such graph (KeyError: add the name to CASES)
        return f"n/a ({type(err).__name__})"
    shared = [v for v in graph_inputs([output]) if isinstance(v, SharedVariable)]
    fgraph = FunctionGraph([*inputs, *shared], [output], clone=True)
    mode.JAX.optimizer.rewrite(fgraph)
    missing: set[str] = set()
    try:
        missing = missing_ops(fgraph)
        result = jax.jit(jax_funcify(fgraph))(*values, *(v.get_value() for v in shared))[0]
    except NotImplementedError as err:  # the probe above missed it: quote the message
        missing = missing or {str(err)}
    except Exception as err:
        return f"error: {type(err).__name__}"
    if missing:
        return "missing: " + ",".join(sorted(missing))
    return "ok" if np.all(np.isfinite(result)) else "nonfinite"


def build(name: str, case: str):
    """(inputs, output, input values) of one case; raises where PyMC defines no such graph."""
    cls, (params, (lower, upper)) = getattr(pm, name), CASES[name]
    shared = lambda v: pytensor.shared(np.float64(v))
    kwargs = {k: shared(v) if np.isscalar(v) else v for k, v in params.items()}
    mid = 0.5 * (lower + upper)
    if case == "logcdf":
        value = pt.dscalar("value")
        return [value], pm.logcdf(cls.dist(**kwargs), value), [mid]
    with pm.Model() as model:
        if case == "logp":
            cls("x", **kwargs, initval=mid)
        elif case == "censored":
            data = pm.Data("y", np.array([lower, mid, upper]))
            pm.Censored("x", cls.dist(**kwargs), shared(lower), shared(upper), observed=data)
        else:
            pm.Truncated("x", cls.dist(**kwargs), shared(lower), shared(upper), initval=mid)
    point = model.initial_point()
    return model.value_vars, model.logp(), [point[v.name] for v in model.value_vars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--with-mpi-pymc", action="store_true", help="register mpi_pymc's first")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    print(f"pymc {pm.__version__}, pytensor {pytensor.__version__}, jax {jax.__version__}")
    if args.with_mpi_pymc:
        from mpi_pymc.model import jax_ops

        print("mpi_pymc registered its translations of:", jax_ops.register())
    needed_by: dict[str, list[str]] = defaultdict(list)
    for name in continuous_distributions():
        statuses = {case: case_status(name, case) for case in KINDS}
        print(f"{name:18s} " + " | ".join(f"{c} {s}" for c, s in statuses.items()))
        for case, status in statuses.items():
            if status.startswith("missing: "):
                for op in status.removeprefix("missing: ").split(","):
                    needed_by[op].append(f"{name}.{case}")
    print("ops with no JAX implementation:" + ("" if needed_by else " none"))
    for op, users in sorted(needed_by.items()):
        print(f"  {op}: {', '.join(users)}")


if __name__ == "__main__":
    main()
