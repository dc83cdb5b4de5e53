"""Can the model's JAX translation be trusted? Checked before the first draw.

Two failures of the PyMC -> JAX path must never reach a user as a traceback or, worse, as a
posterior: an op that PyTensor's JAX backend cannot translate (named here with the model
variable that needs it), and a translation that runs but computes something else (the JAX
log-density is compared with PyTensor's own backend at the initial point and a few jittered
points; a disagreement names the variable whose term differs).
"""

from __future__ import annotations

import numpy as np

from mpi_pymc.model.compile import TranslationError, model_terms

# Chains' starting points checked besides the initial point (each the initial point jittered
# by U(-1, 1) per unconstrained coordinate, as PyMC's "jitter+adapt_diag" makes them).
JITTERED_POINTS = 3
# Agreement required between the two backends, relative to max(1, |log density|). A wrong
# translation is off by far more; float32 sums of many observations by far less.
RTOL = {"float64": 1e-6, "float32": 1e-3}


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

    from mpi_pymc.model.compile import data_inputs, data_values, jaxify

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
