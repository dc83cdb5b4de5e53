"""Can the model's JAX translation be trusted? Checked before the first draw.

Two failures of the PyMC -> JAX path must never reach a user as a traceback or, worse, as a
posterior: an op that PyTensor's JAX backend cannot translate (named here with the model
variable that needs it), and a translation that runs but computes something else (the JAX
log-density is compared with PyTensor's own backend at the initial point and a few jittered
points; a disagreement names the variable whose term differs).
"""

from __future__ import annotations

import inspect
import traceback

import numpy as np

from mpi_pymc.config import UserError

# Chains' starting points checked besides the initial point (each the initial point jittered
# by U(-1, 1) per unconstrained coordinate, as PyMC's "jitter+adapt_diag" makes them).
JITTERED_POINTS = 3
# Agreement required between the two backends, relative to max(1, |log density|). A wrong
# translation is off by far more; float32 sums of many observations by far less.
RTOL = {"float64": 1e-6, "float32": 1e-3}


class TranslationError(UserError):
    """The model cannot be sampled here as translated: the message is the user's one line."""


def model_terms(model) -> tuple[list[str], list]:
    """The model's log-density terms (free variables with their Jacobians, observed
    variables, potentials, in PyMC's order) and the name of the variable each belongs to."""
    variables = [*model.free_RVs, *model.observed_RVs, *model.potentials]
    names = [v.name or f"potential {i}" for i, v in enumerate(variables)]
    return names, model.logp(sum=False)


def _untranslatable_op(fgraph, inputs) -> str | None:
    """The name of the first op of ``fgraph`` PyTensor's JAX backend has no implementation for: its
    translation raises NotImplementedError, or running it on ``inputs`` (traced, not
    computed) does, as PyTensor's eigvalsh does for a generalized problem."""
    import jax
    from pytensor.link.jax.dispatch import jax_funcify

    functions = {}
    for node in fgraph.toposort():
        try:
            fn = jax_funcify(node.op, node=node)
        except NotImplementedError:
            return _op_name(node.op)
        code = getattr(inspect.unwrap(fn), "__code__", None)
        if code is not None:
            functions.setdefault(code, node)
    try:
        jax.eval_shape(jax_funcify(fgraph), *inputs)
    except NotImplementedError as exc:
        # The innermost frame that runs one node's translated function is the node's.
        found = None
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            found = functions.get(frame.f_code, found)
        return _op_name(found.op) if found is not None else f"? ({exc})"
    return None


def _op_name(op) -> str:
    scalar = getattr(op, "scalar_op", None)
    return str(getattr(scalar, "name", None) or scalar or op)


def unsupported_op(model, exc: NotImplementedError) -> TranslationError:
    """The one line for an op without a JAX implementation: which op, which variable needs
    it, and what to do. Searches the model's terms one at a time (a failure path: cost is no
    concern)."""
    import pytensor
    from pymc.util import get_default_varnames

    from mpi_pymc.compile import data_inputs, data_values, program_graph

    value_vars = list(model.value_vars)
    point = model.initial_point()
    values = [np.asarray(point[v.name], dtype=v.dtype) for v in value_vars]
    names, terms = model_terms(model)
    deterministics = get_default_varnames(model.deterministics, include_transformed=False)
    names += [d.name for d in deterministics]
    terms += list(model.replace_rvs_by_values(deterministics))
    for name, term in zip(names, terms, strict=True):
        data_vars = data_inputs([term])
        fgraph = program_graph(value_vars, [term], data_vars, float_dtype=np.float64)
        inputs = [*values, *data_values(data_vars, np.float64)]
        op = _untranslatable_op(fgraph, inputs)
        if op is not None:
            return TranslationError(
                f"model variable '{name}' needs the PyTensor op '{op}', which has no JAX "
                f"implementation in pytensor {pytensor.__version__}: write that term with "
                "other operations (pm.CustomDist or pm.Potential), or sample this model with "
                'PyMC\'s own NUTS (pm.sample(nuts_sampler="pymc"))'
            )
    return TranslationError(f"could not translate the model to JAX: {exc}")


def _disagrees(jax_value: float, reference: float, rtol: float) -> bool:
    if not (np.isfinite(jax_value) and np.isfinite(reference)):
        return not (jax_value == reference or (np.isnan(jax_value) and np.isnan(reference)))
    return abs(jax_value - reference) > rtol * max(1.0, abs(reference))


def check_log_density(model, compiled, points: np.ndarray, jax_values: np.ndarray) -> None:
    """Raise :class:`TranslationError` unless ``jax_values``, the JAX log-density at the flat
    unconstrained ``points`` (the run computes them anyway when it picks the chains' starting
    points), equal PyTensor's own at the same points.

    PyTensor evaluates the model in its FAST_COMPILE mode, an implementation independent of
    JAX that compiles in a tenth of a second (its default mode compiles C for seconds; its
    Python mode with all rewrites took 9 s for 4 points of a 50,000-row regression). That mode
    leaves out PyTensor's numerical stabilisations, so a point where only PyTensor's value is
    non-finite says nothing about the translation and is skipped.
    """
    rtol = RTOL[compiled.float_dtype]
    names, terms = model_terms(model)
    reference_terms = model.compile_fn(
        [t.sum() for t in terms],
        inputs=list(model.value_vars),
        point_fn=False,
        mode="FAST_COMPILE",
    )
    for k, (flat, got) in enumerate(zip(points, np.asarray(jax_values, float), strict=True)):
        values = [
            np.asarray(v, dtype=var.dtype)
            for v, var in zip(
                compiled.unravel(np.asarray(flat, np.float64)), model.value_vars, strict=True
            )
        ]
        reference = [float(v) for v in reference_terms(*values)]
        total = float(np.sum(reference))
        if not np.isfinite(total) and np.isfinite(got):
            continue
        if _disagrees(got, total, rtol):
            where = "the initial point" if k == 0 else f"jittered point {k}"
            name, jax_term, ref_term = _first_differing_term(
                model, compiled, names, terms, flat, reference, rtol
            )
            raise TranslationError(
                f"the JAX log-density of model variable '{name}' is {jax_term:.10g} at {where}, "
                f"PyTensor's is {ref_term:.10g} (total {got:.10g} against {total:.10g}): a "
                "translation bug would give a wrong posterior, so nothing was sampled; please "
                "report it with the model, sample it meanwhile with PyMC's own NUTS "
                '(pm.sample(nuts_sampler="pymc")), or skip this check with --no-check-logp'
            )


def _first_differing_term(model, compiled, names, terms, flat, reference, rtol):
    """(name, JAX value, PyTensor value) of the first term whose two values disagree; the
    term with the largest difference when each is within tolerance on its own."""
    import jax.numpy as jnp

    from mpi_pymc.compile import data_inputs, data_values, jaxify

    sums = [t.sum() for t in terms]
    data_vars = data_inputs(sums)
    fn = jaxify(list(model.value_vars), sums, data_vars, float_dtype=compiled.float_dtype)
    data = [jnp.asarray(v) for v in data_values(data_vars, compiled.float_dtype)]
    values = compiled.unravel(jnp.asarray(flat, compiled.float_dtype))
    got = [float(v) for v in fn(*values, *data)]
    for name, g, r in zip(names, got, reference, strict=True):
        if _disagrees(g, r, rtol):
            return name, g, r
    worst = int(np.argmax([abs(g - r) for g, r in zip(got, reference, strict=True)]))
    return names[worst], got[worst], reference[worst]
