"""PyMC model -> JAX: flat unconstrained log-density, constrained transform, fingerprint.

The log-density is PyMC's own graph, rewritten and translated by PyTensor's JAX backend (the
path ``pm.sample(nuts_sampler="numpyro")`` uses), with two rewrites of our own that cut the
transcendental functions per observation (``graph_rewrites``). Unlike that path, data arrays
(``pm.Data`` and large observed/constant arrays) enter the JAX functions as *arguments*, not
baked-in constants: compile time and the lowered program stay small whatever N is, and a
fingerprint hashes the data separately.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mpi_pymc.core.config import UserError
from mpi_pymc.model.graph_rewrites import fold_data_conditions, fold_data_indices, optimize_for_jax

# Smaller constants stay in the graph: they are parameters of the model, not data.
DATA_MIN_ELEMENTS = 256


@dataclass
class VariableInfo:
    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    dtype: str


@dataclass
class CompiledModel:
    """Everything a sampler and a writer need, built identically on every rank."""

    logdensity: Callable  # (flat_position, data) -> log density (with Jacobian)
    constrain: Callable  # (flat_position, data) -> list of constrained arrays
    data: tuple  # JAX arrays passed as the `data` argument
    value_names: list[str]
    value_shapes: list[tuple[int, ...]]
    dimension: int
    initial_flat: np.ndarray
    posterior_vars: list[VariableInfo]
    coords: dict[str, np.ndarray]
    observed_data: dict[str, tuple[np.ndarray, tuple[str, ...]]]
    constant_data: dict[str, tuple[np.ndarray, tuple[str, ...]]]
    float_dtype: str
    fingerprint: str = ""
    fingerprint_parts: dict = field(default_factory=dict)
    # What ``constrain`` is called with: the data the posterior's variables need (none for most
    # models; the rows for a Deterministic over them), apart from the log-density's ``data``,
    # which a data-parallel run replaces by its shards (model.data_parallel).
    constrain_data: tuple = ()

    def unravel(self, flat):
        return _unravel(flat, self.value_shapes)


def _unravel(flat, shapes: list[tuple[int, ...]]) -> list:
    """Split a flat position vector into the model's value variables."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=int))
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def import_pymc_jax() -> None:
    """Import ``pymc.sampling.jax`` (its JAX translations of PyMC's ops) without its side effect
    on ``XLA_FLAGS``: on import it replaces any host device count with
    ``--xla_force_host_platform_device_count=100``, so every CPU rank would start 100 host
    devices and spread its chains over them (a copy of each program per device) instead of the
    device count the user gave (``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS``) or the one default."""
    before = os.environ.get("XLA_FLAGS")
    try:
        import pymc.sampling.jax  # noqa: F401
    finally:
        if before is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = before


def data_inputs(outputs) -> list:
    """Shared variables and large constants feeding ``outputs``: the model's data."""
    from pytensor.compile import SharedVariable
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor.random.type import RandomType
    from pytensor.tensor.variable import TensorConstant

    found: list = []
    for var in graph_inputs(outputs):
        if isinstance(var, SharedVariable):
            if isinstance(var.type, RandomType):
                raise ValueError("the model's log-density depends on a random generator")
            value = _value_of(var)
            if value.ndim == 0 and np.issubdtype(value.dtype, np.integer):
                continue  # a dim's length (coords=): a constant, so shapes from it stay static
            found.append(var)
        elif isinstance(var, TensorConstant) and var.data.size >= DATA_MIN_ELEMENTS:
            found.append(var)
    return found


def _value_of(var) -> np.ndarray:
    return np.asarray(var.get_value(borrow=True) if hasattr(var, "get_value") else var.data)


def data_values(data_vars, float_dtype) -> list[np.ndarray]:
    """The arrays to pass for ``data_vars``: floating data in the run's precision. The model's
    own arrays where they already are (no copy: a data array of a few hundred MB is held once
    by the model, once by JAX, not once more per caller); read them, never write them."""
    values = []
    for var in data_vars:
        value = _value_of(var)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(float_dtype, copy=False)
        values.append(value)
    return values


def jax_graph(value_vars, outputs, data_vars, rewrites: bool = True, shapes=None, lengths=None):
    """The FunctionGraph ``f(*values, *data) -> outputs`` that :func:`jaxify` translates, with
    the rewrites PyTensor's JAX mode applies (and ours, unless ``rewrites=False``). ``shapes``:
    the data's static shapes when they are not the variables' own, and ``lengths`` (a dim's
    shared length or a variable's size constant -> value) the sizes to go with them (a data
    shard's rows)."""
    import pytensor.tensor as pt
    from pytensor.compile import SharedVariable
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs

    # Static shapes: JAX compiles one program per data shape anyway, and shapes PyTensor
    # derives from the data (a scan's length, slice bounds) must be static for JAX.
    given = shapes
    if shapes is None:
        shapes = [_value_of(var).shape for var in data_vars]
    placeholders = [
        var.type.clone(shape=tuple(shape))() for var, shape in zip(data_vars, shapes, strict=True)
    ]
    for var, ph in zip(data_vars, placeholders, strict=True):
        ph.name = f"data_{var.name or 'constant'}"
    replace = dict(zip(data_vars, placeholders, strict=True))
    for var in graph_inputs(outputs):
        if isinstance(var, SharedVariable) and var not in replace:
            value = (lengths or {}).get(var, _value_of(var))
            replace[var] = pt.constant(value, dtype=var.type.dtype)
        elif var in (lengths or {}) and var not in replace:
            replace[var] = pt.constant(lengths[var], dtype=var.type.dtype)
    # Other shapes than the variables' own: the graph is rebuilt, its types inferred anew (a
    # strict rebuild would assert the old shapes on the new data).
    replaced = clone_replace(outputs, replace=replace, rebuild_strict=given is None and not lengths)
    fgraph = FunctionGraph(inputs=[*value_vars, *placeholders], outputs=replaced, clone=True)
    if rewrites:
        optimize_for_jax(fgraph)
    else:
        from pytensor.compile import mode

        mode.JAX.optimizer.rewrite(fgraph)
    return fgraph


def program_graph(value_vars, outputs, data_vars, rewrites: bool = True, float_dtype=None):
    """The FunctionGraph :func:`jaxify` translates: :func:`jax_graph`, then (with our rewrites)
    what depends on the data alone evaluated on it, once: ``nonzero`` of the data
    (``graph_rewrites.fold_data_indices``) and conditions on it (``fold_data_conditions``).
    The program must then be called with ``data_values(data_vars, float_dtype)``, as every
    caller does."""
    from mpi_pymc.model import jax_ops

    jax_ops.register()  # the ops this PyTensor cannot translate (erfcx on pytensor 2.x)
    import_pymc_jax()  # registers JAX translations PyMC adds

    fgraph = jax_graph(value_vars, outputs, data_vars, rewrites)
    if rewrites:
        # The placeholders are the fgraph's last inputs; the values are those the program
        # will be called with, in the placeholders' dtypes.
        values = data_values(data_vars, float_dtype) if float_dtype else map(_value_of, data_vars)
        placeholders = fgraph.inputs[len(value_vars) :]
        by_placeholder = {
            ph: np.asarray(value).astype(ph.type.dtype, copy=False)
            for ph, value in zip(placeholders, values, strict=True)
        }
        fold_data_indices(fgraph, by_placeholder)
        fold_data_conditions(fgraph, by_placeholder)
    return fgraph


def jaxify(value_vars, outputs, data_vars, rewrites: bool = True, float_dtype=None):
    """JAX function ``f(*values, *data) -> list`` of ``outputs``, data as arguments: the
    translation of :func:`program_graph` (see there for the data it must be called with).
    ``rewrites=False`` leaves ours out: PyTensor's JAX program as the numpyro path compiles
    it, for benchmarks that measure what the rewrites gain."""
    from pytensor.link.jax.dispatch import jax_funcify

    return jax_funcify(program_graph(value_vars, outputs, data_vars, rewrites, float_dtype))


def _dims_for(model, name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    dims = tuple(model.named_vars_to_dims.get(name, ()) or ())
    if len(dims) != len(shape):
        dims = tuple(d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(dims))
        dims = dims + tuple(f"{name}_dim_{i}" for i in range(len(dims), len(shape)))
    return tuple(d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(dims))


def _group_data(model, variables, dims_names) -> dict:
    out = {}
    for name, var in zip(dims_names, variables, strict=True):
        value = _value_of(var)
        out[name] = (value, _dims_for(model, name, value.shape))
    return out


def compile_model(model, precision: str = "float64", rewrites: bool = True) -> CompiledModel:
    """Translate ``model`` to JAX. JAX must already be configured for ``precision``.
    ``rewrites``: see :func:`jaxify`. An op without a JAX implementation, found when
    translating or when tracing (a translation that refuses some inputs), raises
    ``TranslationError`` naming the op and the model variable."""
    try:
        return _compile_model(model, precision, rewrites)
    except NotImplementedError as exc:
        raise unsupported_op(model, exc) from exc


def _compile_model(model, precision: str, rewrites: bool) -> CompiledModel:
    import jax
    import jax.numpy as jnp
    from pymc.util import get_default_varnames

    import_pymc_jax()  # its import switches x64 on: set precision after

    jax.config.update("jax_enable_x64", precision == "float64")
    # Full-precision matrix products. On GPUs since Ampere, JAX's default runs float32 matmuls
    # in TF32 (10-bit mantissa): the log-density and its gradient then disagree by more than
    # the integrator's error, step-size adaptation shrinks the step to chase that noise, and
    # trajectories hit the step cap. The data-bound products here lose nothing to it.
    jax.config.update("jax_default_matmul_precision", "highest")
    if precision == "float32":
        # PyTensor's JAX reductions ask for float64 accumulators; with x64 off JAX gives float32,
        # which is what float32 means here, and would warn at every trace of the log-density.
        warnings.filterwarnings(
            "ignore", message="Explicitly requested dtype float64", category=UserWarning
        )
    float_dtype = np.float64 if precision == "float64" else np.float32
    value_vars = list(model.value_vars)
    logp = model.logp()
    posterior_outputs = list(
        get_default_varnames(model.unobserved_value_vars, include_transformed=False)
    )
    data_vars = data_inputs([logp])
    constrain_vars = data_inputs(posterior_outputs)
    logp_fn = jaxify(value_vars, [logp], data_vars, rewrites, float_dtype)
    constrain_fn = jaxify(value_vars, posterior_outputs, constrain_vars, rewrites, float_dtype)
    # One JAX array per data variable, shared by both programs' arguments.
    on_device = {}
    for var in [*data_vars, *constrain_vars]:
        if id(var) not in on_device:
            on_device[id(var)] = jnp.asarray(data_values([var], float_dtype)[0])

    initial_point = model.initial_point()
    value_names = [v.name for v in value_vars]
    value_shapes = [tuple(np.shape(initial_point[n])) for n in value_names]
    initial_flat = np.concatenate(
        [np.ravel(np.asarray(initial_point[n], dtype=float_dtype)) for n in value_names]
    )

    def logdensity(flat, data):
        return logp_fn(*_unravel(flat, value_shapes), *data)[0]

    def constrain(flat, data):
        return constrain_fn(*_unravel(flat, value_shapes), *data)

    compiled = CompiledModel(
        logdensity=logdensity,
        constrain=constrain,
        data=tuple(on_device[id(var)] for var in data_vars),
        constrain_data=tuple(on_device[id(var)] for var in constrain_vars),
        value_names=value_names,
        value_shapes=value_shapes,
        dimension=int(initial_flat.size),
        initial_flat=initial_flat,
        posterior_vars=[],
        coords={},
        observed_data={},
        constant_data={},
        float_dtype=np.dtype(float_dtype).name,
    )

    # Shapes and dtypes only: tracing, where running it would cost an XLA compile.
    example = jax.eval_shape(constrain, jnp.asarray(initial_flat), compiled.constrain_data)
    compiled.posterior_vars = [
        VariableInfo(
            name=var.name,
            shape=tuple(value.shape),
            dims=_dims_for(model, var.name, tuple(value.shape)),
            dtype=np.dtype(value.dtype).name,
        )
        for var, value in zip(posterior_outputs, example, strict=True)
    ]
    observed_names = [rv.name for rv in model.observed_RVs]
    compiled.observed_data = _group_data(
        model, [model.rvs_to_values[rv] for rv in model.observed_RVs], observed_names
    )
    observed_values = {id(model.rvs_to_values[rv]) for rv in model.observed_RVs}
    constant = [v for v in getattr(model, "data_vars", []) if id(v) not in observed_values]
    compiled.constant_data = _group_data(model, constant, [v.name for v in constant])
    compiled.coords = _all_coords(model, compiled)
    compiled.fingerprint, compiled.fingerprint_parts = fingerprint(compiled)
    return compiled


def _all_coords(model, compiled: CompiledModel) -> dict[str, np.ndarray]:
    """Coordinate values for every dimension used by any variable (index when unnamed)."""
    sizes: dict[str, int] = {}
    shapes = [(v.dims, v.shape) for v in compiled.posterior_vars]
    shapes += [(dims, value.shape) for value, dims in compiled.observed_data.values()]
    shapes += [(dims, value.shape) for value, dims in compiled.constant_data.values()]
    for dims, shape in shapes:
        for dim, size in zip(dims, shape, strict=True):
            sizes.setdefault(dim, size)
    coords = {}
    for dim, size in sizes.items():
        values = model.coords.get(dim)
        if values is not None and len(values) == size:
            coords[dim] = np.asarray(list(values))
        else:
            coords[dim] = np.arange(size)
    return coords


def fingerprint(compiled: CompiledModel) -> tuple[str, dict]:
    """Hash of what makes a model: its variables, its data, its initial point, and its
    log-density there (to 9 significant digits).

    Not the lowered program's text: PyTensor 2.x's rewrites order equivalent graphs by object
    ids, so two ranks building the same model could lower different texts and refuse a good
    model as "different models" (about half the runs of an ordinal model in the coverage
    suite). The value stands for the program: a different model gives a different value."""
    import jax
    import jax.numpy as jnp

    value = jax.jit(compiled.logdensity)(jnp.asarray(compiled.initial_flat), compiled.data)
    parts = {
        "logdensity_at_initial_point": f"{float(value):.9e}",
        # The arrays' own bytes (tobytes() would copy each, hundreds of MB for a big design).
        "data": [
            hashlib.sha256(np.ascontiguousarray(np.asarray(d)).data).hexdigest()
            for d in compiled.data
        ],
        "initial_point": hashlib.sha256(compiled.initial_flat.tobytes()).hexdigest(),
        "variables": [[v.name, list(v.shape)] for v in compiled.posterior_vars],
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest, parts


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

    functions: dict = {}
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
