"""The JAX program of one draw for the groups a pass adds: PyMC's pointwise log-likelihood graph
and the observed variables' forward-sampling graph, translated like the log-density (data as
arguments), with the dims of every output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpi_pymc.core.config import UserError
from mpi_pymc.postprocessing.settings import LOG_LIKELIHOOD, POSTERIOR_PREDICTIVE, PostprocessConfig

if TYPE_CHECKING:
    import numpy as np

    from mpi_pymc.postprocessing.plan import RunFacts


@dataclass
class Pointwise:
    """One draw's outputs as a JAX function ``(key, *free_values, *data) -> [arrays]``.

    ``outputs`` lists (group, variable) in the order the function returns them.
    """

    function: Callable
    free_names: list[str]
    data: tuple
    outputs: list[tuple[str, Any]]  # (group, mpi_pymc.output.layout.Variable)
    coords: dict[str, np.ndarray]
    float_dtype: np.dtype


def _observed_names(model, var_names: tuple[str, ...]) -> list[str]:
    observed = [rv.name for rv in model.observed_RVs]
    if not observed:
        raise UserError("the model has no observed variables: nothing to post-process")
    unknown = [name for name in var_names if name not in observed]
    if unknown:
        raise UserError(
            f"--var {', '.join(unknown)}: not an observed variable of the model "
            f"(observed: {', '.join(observed)})"
        )
    return list(var_names) or observed


def _log_likelihood_graph(model, names: list[str]):
    """PyMC's pointwise log-likelihood, as ``pm.compute_log_likelihood`` builds it: of the
    constrained free values (the posterior's), transforms removed."""
    from pymc.model.transform.conditioning import remove_value_transforms

    umodel = remove_value_transforms(model)
    outputs = umodel.logp(vars=[umodel[name] for name in names], sum=False)
    values = {var.name: var for var in umodel.value_vars}
    return [values[rv.name] for rv in model.free_RVs], list(outputs)


def _predictive_graph(model, names: list[str]):
    """The observed variables' forward-sampling graph given the free variables.

    Free RVs become inputs; each random generator becomes an input (the JAX backend threads
    ``{"jax_state": key}`` through it); integer scalars such as dimension lengths become
    constants, because JAX needs sizes of random draws at trace time.
    """
    import pytensor.tensor as pt
    from pytensor.compile import SharedVariable
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor.random.type import RandomType

    free_inputs = [rv.type() for rv in model.free_RVs]
    outputs = clone_replace(
        [model[name] for name in names], replace=dict(zip(model.free_RVs, free_inputs, strict=True))
    )
    replace: dict[Any, Any] = {}
    rngs: list = []
    for var in graph_inputs(outputs):
        if isinstance(var, SharedVariable) and isinstance(var.type, RandomType):
            rngs.append(var.type())
            replace[var] = rngs[-1]
        elif isinstance(var, SharedVariable) and var.type.ndim == 0 and "int" in var.type.dtype:
            replace[var] = pt.constant(var.get_value(), dtype=var.type.dtype)
    return free_inputs, rngs, clone_replace(outputs, replace=replace)


def build_pointwise(model, compiled, config: PostprocessConfig, precision: str) -> Pointwise:
    """JAX program of one draw for the requested groups and observed variables."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.model.compile import data_inputs, data_values, jaxify
    from mpi_pymc.output.layout import Variable

    jax.config.update("jax_enable_x64", precision == "float64")
    float_dtype = np.dtype(precision)
    names = _observed_names(model, config.var_names)
    graphs: list[tuple[str, list, list, list]] = []  # (group, inputs, generators, outputs)
    if config.log_likelihood:
        value_vars, log_likelihoods = _log_likelihood_graph(model, names)
        graphs.append((LOG_LIKELIHOOD, value_vars, [], log_likelihoods))
    if config.posterior_predictive:
        graphs.append((POSTERIOR_PREDICTIVE, *_predictive_graph(model, names)))
    data_vars = data_inputs([out for *_, outputs in graphs for out in outputs])
    data = tuple(jnp.asarray(v) for v in data_values(data_vars, float_dtype))
    programs = [
        (
            jaxify([*inputs, *rngs], outputs, data_vars, float_dtype=float_dtype),
            len(rngs),
            [
                float_dtype if out.type.dtype.startswith("float") else out.type.dtype
                for out in outputs
            ],
        )
        for _, inputs, rngs, outputs in graphs
    ]

    def one_draw(key, free: list, data_args: tuple) -> list:
        results = []
        for program, n_rngs, dtypes in programs:
            rngs = [{"jax_state": k} for k in jax.random.split(key, n_rngs)] if n_rngs else []
            values = program(*free, *rngs, *data_args)
            results += [jnp.asarray(v, dtype=d) for v, d in zip(values, dtypes, strict=True)]
        return results

    free_names = [rv.name for rv in model.free_RVs]
    shapes = {v.name: v.shape for v in compiled.posterior_vars}
    example = jax.eval_shape(
        one_draw,
        jax.ShapeDtypeStruct((2,), jnp.uint32),
        [jax.ShapeDtypeStruct(shapes[name], float_dtype) for name in free_names],
        data,
    )
    coords = dict(compiled.coords)
    outputs = []
    labels = [(group, name) for group, *_ in graphs for name in names]
    for (group, name), value in zip(labels, example, strict=True):
        shape = tuple(value.shape)
        dims = _dims_of(name, shape, compiled.observed_data[name][1], coords)
        for dim, size in zip(dims, shape, strict=True):
            coords.setdefault(dim, np.arange(size))
        outputs.append((group, Variable(name, dims, shape, np.dtype(value.dtype).name)))
    return Pointwise(one_draw, free_names, data, outputs, coords, float_dtype)


def _dims_of(name: str, shape: tuple, observed_dims: tuple, coords: dict) -> tuple[str, ...]:
    """The observed variable's dims for an output of ``shape`` (a multivariate log-likelihood
    drops the event dims); unnamed dims are ``NAME_dim_i``, as elsewhere in the file."""
    dims = tuple(observed_dims[: len(shape)])
    if len(dims) == len(shape) and all(
        d in coords and len(coords[d]) == size for d, size in zip(dims, shape, strict=True)
    ):
        return dims
    return tuple(f"{name}_dim_{i}" for i in range(len(shape)))


def check_same_model(compiled, facts: RunFacts) -> str | None:
    """Refuse a model whose variables or data differ from the sampled one's. The log-density
    at the initial point alone may differ (other package versions, or a file written before
    the fingerprint held it): then a note (returned) is enough."""
    ours, theirs = compiled.fingerprint_parts, facts.fingerprint_parts
    for part, what in (("variables", "free variables"), ("data", "data")):
        if json.loads(json.dumps(ours[part])) != theirs.get(part):
            raise UserError(
                f"the model's {what} differ from the sampled run's: post-process with the "
                "model file (and data) the run sampled"
            )
    key = "logdensity_at_initial_point"
    if ours[key] != theirs.get(key):
        return (
            "note: the model's log-density at its initial point differs from the sampled "
            "run's (other PyMC/JAX versions?); its variables and data match"
        )
    return None
