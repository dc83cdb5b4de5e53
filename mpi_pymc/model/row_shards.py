"""Data shards (``--data-shards S``): the log-density as the prior terms once plus a sum over
row shards of the likelihood terms.

The rows are those of the observed data: the observed variables' leading dimension (or the dim
``row_dim`` names), and every data array of that length in the likelihood (the design matrix,
a group-index column, a second observed variable over the same rows) is split with them into
``S`` contiguous shards. Two JAX programs come from PyMC's graph:

- the prior part, ``prior(flat, prior_data)``: the free variables' terms with their Jacobians
  and the Potentials, on the data that is not per row;
- a shard's likelihood part, ``shard_likelihood(flat, rows, likelihood_data)``: the observed
  variables' elementwise terms summed over one shard's rows, compiled once for a shard's shape.

A model whose likelihood is not a sum over independent rows is refused (``UserError``, one line
naming the variable): an observed variable whose elementwise log-probability does not keep the
row axis (a multivariate distribution or a random walk over the rows), a per-row free variable,
a prior term or Potential that reads the rows. Anything the structure does not show (a
``cumsum`` over the rows, a data array of the rows' length that is not per row) is caught by
:func:`check_split`, which compares the split log-density with the whole one at a few points.

Uneven shards are padded, not refused: shards hold ``ceil(N / S)`` rows, the first ``N % S``
all real (``numpy.array_split``'s sizes, so no shard is empty), the others end in copies of
their last real row whose terms a mask sets to exactly 0 (copies, so the masked terms and their
gradients are finite wherever the real ones are: ``where`` would turn a NaN gradient of a
masked row into NaN).

Pure: nothing here knows about devices (``data_parallel`` runs the shards on them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mpi_pymc.core.config import UserError
from mpi_pymc.model.compile import (
    DATA_MIN_ELEMENTS,
    CompiledModel,
    _unravel,
    _value_of,
    data_values,
    jax_graph,
)

__all__ = ["RowSplit", "ShardLayout", "check_split", "split_rows"]

# Agreement required of the split log-density with the whole one (relative to max(1, |lp|)):
# they differ by the order of a sum (1e-15 in float64); a model that mixes rows, by far more.
SPLIT_RTOL = {"float64": 1e-9, "float32": 1e-4}
# Points where check_split compares them: the initial point and jittered ones.
CHECK_POINTS = 3


@dataclass(frozen=True)
class ShardLayout:
    """``rows`` split into ``shards`` contiguous shards of ``per_shard`` rows, padding included."""

    rows: int
    shards: int

    @property
    def per_shard(self) -> int:
        return math.ceil(self.rows / self.shards)

    def bounds(self) -> list[tuple[int, int]]:
        """Each shard's real rows ``[start, stop)``: sizes differ by at most one."""
        base, extra = divmod(self.rows, self.shards)
        starts = [s * base + min(s, extra) for s in range(self.shards + 1)]
        return list(zip(starts[:-1], starts[1:], strict=True))

    def shard(self, array: np.ndarray, shard: int) -> np.ndarray:
        """Shard ``shard``'s rows of ``array``, padded to ``per_shard`` rows with copies of its
        last real row: a view of ``array`` where no padding is needed, so that no rank holds a
        second copy of the whole data."""
        start, stop = self.bounds()[shard]
        part = array[start:stop]
        missing = self.per_shard - (stop - start)
        return np.concatenate([part, np.repeat(part[-1:], missing, axis=0)]) if missing else part

    def pad(self, array: np.ndarray) -> np.ndarray:
        """Every shard of ``array`` (:meth:`shard`), one after another: ``(shards * per_shard,
        ...)``."""
        return np.concatenate([self.shard(array, s) for s in range(self.shards)])

    def mask(self) -> np.ndarray:
        """True for the real rows of :meth:`pad`'s layout."""
        return np.concatenate(
            [np.arange(self.per_shard) < stop - start for start, stop in self.bounds()]
        )


@dataclass
class RowSplit:
    """The two programs and their data. ``rows`` are the model's row arrays as they are (the
    shard mask of :meth:`ShardLayout.mask` last); shard ``s`` passes :meth:`shard_rows`, its
    rows padded by the layout."""

    layout: ShardLayout
    row_dim: str | None
    observed_names: list[str]
    row_names: list[str]  # the data arrays split with the rows
    prior: Callable  # (flat, prior_data) -> scalar
    prior_data: tuple
    shard_likelihood: Callable  # (flat, shard_rows, likelihood_data) -> scalar
    shard_terms: Callable  # (flat, shard_rows, likelihood_data) -> one sum per observed var
    rows: tuple
    likelihood_data: tuple

    def shard_rows(self, shard: int) -> tuple:
        return tuple(self.shard_column(column, shard) for column in range(len(self.rows)))

    def shard_column(self, column: int, shard: int) -> np.ndarray:
        """Shard ``shard``'s block of ``rows[column]`` (the mask's is a slice: it is laid out
        padded already)."""
        if column == len(self.rows) - 1:
            size = self.layout.per_shard
            return self.rows[column][shard * size : (shard + 1) * size]
        return self.layout.shard(self.rows[column], shard)

    def logdensity(self, flat) -> float:
        """Prior plus the shards' likelihoods, one shard after another (no devices: the
        reference that the data-parallel program is checked against)."""
        total = self.prior(flat, self.prior_data)
        for shard in range(self.layout.shards):
            total = total + self.shard_likelihood(
                flat, self.shard_rows(shard), self.likelihood_data
            )
        return total


def _refuse(name: str, why: str) -> UserError:
    return UserError(f"--data-shards: model variable '{name}' {why}; sample it without shards")


def _candidate_inputs(outputs) -> list:
    """Data feeding ``outputs`` that may be per row: shared arrays and array constants of any
    size (a 100-row observed vector is a constant below compile's data threshold)."""
    from pytensor.compile import SharedVariable
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor.random.type import RandomType
    from pytensor.tensor.variable import TensorConstant

    found: list = []
    for var in graph_inputs(outputs):
        if isinstance(var, SharedVariable) and not isinstance(var.type, RandomType):
            if _value_of(var).ndim >= 1:
                found.append(var)
        elif isinstance(var, TensorConstant) and var.data.ndim >= 1:
            found.append(var)
    return found


def _row_count(model, row_dim: str | None) -> int:
    observed = model.observed_RVs
    if not observed:
        raise UserError("--data-shards: the model has no observed variables: nothing to split")
    if row_dim is not None:
        if row_dim not in model.coords and row_dim not in model.dim_lengths:
            raise UserError(f"--data-row-dim '{row_dim}' is not a dim of the model")
        return int(_value_of(model.dim_lengths[row_dim]))
    lengths = {}
    for rv in observed:
        value = _value_of(model.rvs_to_values[rv])
        if value.ndim == 0:
            raise _refuse(rv.name, "is observed as one value: it has no rows to split")
        lengths[rv.name] = value.shape[0]
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"'{k}' {v}" for k, v in lengths.items())
        raise UserError(
            f"--data-shards: the observed variables have different numbers of rows ({described}):"
            " name the row dim with --data-row-dim"
        )
    return next(iter(lengths.values()))


def _row_lengths(model, rows: int, row_dim: str | None, size: int) -> dict:
    """The row count where the likelihood's graph holds it -> a shard's: PyMC broadcasts an
    observed variable's terms to its size, the row dim's shared length (``coords=``) or a
    constant taken from the observed data's shape."""
    from pytensor.tensor.variable import TensorConstant

    names = {row_dim} if row_dim else set()
    found: dict = {}
    for rv in model.observed_RVs:
        dims = model.named_vars_to_dims.get(rv.name) or ()
        if dims and dims[0] is not None:
            names.add(dims[0])
        for arg in rv.owner.inputs:
            if not isinstance(arg, TensorConstant):
                continue
            data = np.asarray(arg.data)
            if np.issubdtype(data.dtype, np.integer) and data.ndim == 1 and data.size:
                if data[0] == rows:
                    found[arg] = np.concatenate([[size], data[1:]]).astype(data.dtype)
    for name in names:
        length = model.dim_lengths.get(name)
        if length is not None and int(_value_of(length)) == rows:
            found[length] = np.asarray(size, dtype=length.type.dtype)
    return found


def _depends_on(term, variables) -> list:
    from pytensor.graph.traversal import ancestors

    wanted = {id(v) for v in variables}
    return [a for a in ancestors([term]) if id(a) in wanted]


def _check_structure(model, rows: int, row_dim, obs_terms, row_vars, value_shapes) -> None:
    """Refuse what the graph shows cannot be split over rows (see the module docstring)."""
    for rv, term in zip(model.observed_RVs, obs_terms, strict=True):
        dims = model.named_vars_to_dims.get(rv.name) or ()
        if row_dim is not None and (not dims or dims[0] != row_dim):
            raise _refuse(rv.name, f"is observed but not over the row dim '{row_dim}'")
        shape = term.type.shape
        if term.type.ndim == 0 or (shape[0] is not None and shape[0] != rows):
            kind = type(rv.owner.op).__name__
            raise _refuse(
                rv.name,
                f"({kind}) has one log-probability term over all its {rows} rows, not one per "
                "row: its rows are not independent given the parameters, so they cannot be split",
            )
    observed_values = {id(model.rvs_to_values[rv]) for rv in model.observed_RVs}
    shape_of = dict(zip(model.value_vars, value_shapes, strict=True))
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        shape = shape_of[value]
        dims = model.named_vars_to_dims.get(rv.name) or ()
        per_row = dims[0] == row_dim if (dims and row_dim) else (shape and shape[0] == rows)
        if per_row and _depends_on_any(obs_terms, [value]):
            raise _refuse(rv.name, f"has one value per row ({rows}): a per-row parameter")
    for rv, term in zip(model.free_RVs, model.logp(vars=model.free_RVs, sum=False), strict=True):
        used = [v for v in _depends_on(term, row_vars) if id(v) not in observed_values]
        if used:
            raise _refuse(rv.name, f"has a prior that reads the row data ({_names(used)})")
    for i, potential in enumerate(model.potentials):
        used = _depends_on(potential, row_vars)
        if used:
            raise _refuse(
                potential.name or f"potential {i}",
                f"is a Potential over the row data ({_names(used)}): it may mix rows",
            )


def _depends_on_any(terms, variables) -> bool:
    return any(_depends_on(term, variables) for term in terms)


def _names(variables) -> str:
    return ", ".join(sorted({v.name or "a constant" for v in variables}))


def _program(value_vars, outputs, data_vars, shapes, fold_values, lengths=None):
    """Like ``compile.jaxify``, with the data's shapes given (a shard's) and data conditions
    folded only where they hold on every shard."""
    from pytensor.link.jax.dispatch import jax_funcify

    from mpi_pymc.model import jax_ops
    from mpi_pymc.model.graph_rewrites import fold_data_conditions

    jax_ops.register()
    import pymc.sampling.jax  # noqa: F401  (registers JAX translations PyMC adds)

    fgraph = jax_graph(value_vars, outputs, data_vars, shapes=shapes, lengths=lengths)
    placeholders = fgraph.inputs[len(value_vars) :]
    per_call = [
        {
            ph: np.asarray(value).astype(ph.type.dtype, copy=False)
            for ph, value in zip(placeholders, values, strict=True)
        }
        for values in fold_values
    ]
    fold_data_conditions(fgraph, per_call)
    return jax_funcify(fgraph)


def split_rows(
    model,
    compiled: CompiledModel,
    shards: int,
    row_dim: str | None = None,
) -> RowSplit:
    """Split ``model``'s log-density (as ``compiled`` translated it) into a prior part and a
    likelihood part over ``shards`` row shards; ``UserError`` for a model that cannot be."""
    import jax

    float_dtype = np.dtype(compiled.float_dtype)
    rows = _row_count(model, row_dim)
    if shards < 1 or shards > rows:
        raise UserError(
            f"--data-shards must be between 1 and the model's {rows} rows, got {shards}"
        )
    layout = ShardLayout(rows, shards)
    observed = list(model.observed_RVs)
    obs_terms = model.logp(vars=observed, sum=False)
    row_vars = [v for v in _candidate_inputs(obs_terms) if _value_of(v).shape[0] == rows]
    _check_structure(model, rows, row_dim, obs_terms, row_vars, compiled.value_shapes)

    value_vars = list(model.value_vars)
    shapes = compiled.value_shapes
    # Each observed variable's terms, summed over all but the row axis: one (rows,) vector.
    per_row = [t.sum(axis=tuple(range(1, t.ndim))) if t.ndim > 1 else t for t in obs_terms]
    row_ids = {id(v) for v in row_vars}
    other = [
        v
        for v in _candidate_inputs(per_row)
        if id(v) not in row_ids and _value_of(v).size >= DATA_MIN_ELEMENTS
    ]
    row_values = data_values(row_vars, float_dtype)  # the model's arrays, not copies
    likelihood_data = tuple(data_values(other, float_dtype))
    size = layout.per_shard
    shard_shapes = [(size, *v.shape[1:]) for v in row_values] + [v.shape for v in likelihood_data]
    fold = [[layout.shard(v, s) for v in row_values] + list(likelihood_data) for s in range(shards)]
    try:
        terms_fn = _program(
            value_vars,
            per_row,
            [*row_vars, *other],
            shard_shapes,
            fold,
            _row_lengths(model, rows, row_dim, size),
        )
    except Exception as exc:
        raise UserError(
            f"--data-shards: the likelihood could not be compiled for a shard of {size} rows "
            f"({type(exc).__name__}: {exc}); sample it without shards"
        ) from exc
    mask = layout.mask()
    n_rows = len(row_vars)

    def shard_terms(flat, shard_rows, lik_data):
        import jax.numpy as jnp

        row_data, shard_mask = shard_rows[:n_rows], shard_rows[n_rows]
        per_var = terms_fn(*_unravel(flat, shapes), *row_data, *lik_data)
        return [jnp.sum(jnp.where(shard_mask, v, jnp.zeros_like(v))) for v in per_var]

    def shard_likelihood(flat, shard_rows, lik_data):
        return sum(shard_terms(flat, shard_rows, lik_data))

    prior_outputs = [model.logp(vars=[*model.free_RVs, *model.potentials])]
    prior_vars = [
        v for v in _candidate_inputs(prior_outputs) if _value_of(v).size >= DATA_MIN_ELEMENTS
    ]
    prior_data = tuple(data_values(prior_vars, float_dtype))
    prior_fn = _program(
        value_vars, prior_outputs, prior_vars, [v.shape for v in prior_data], [prior_data]
    )

    def prior(flat, data):
        return prior_fn(*_unravel(flat, shapes), *data)[0]

    split = RowSplit(
        layout=layout,
        row_dim=row_dim,
        observed_names=[rv.name for rv in observed],
        row_names=[v.name or "a constant" for v in row_vars],
        prior=prior,
        prior_data=prior_data,
        shard_likelihood=shard_likelihood,
        shard_terms=shard_terms,
        rows=(*row_values, mask),
        likelihood_data=likelihood_data,
    )
    # Shapes only: a likelihood that traces at a shard's shape (a static row count in the graph
    # would fail here, not at the first draw).
    try:
        jax.eval_shape(
            shard_likelihood, np.asarray(compiled.initial_flat), split.shard_rows(0),
            likelihood_data,
        )  # fmt: skip
    except Exception as exc:
        raise UserError(
            f"--data-shards: the likelihood does not run on a shard of {size} rows "
            f"({type(exc).__name__}: {exc}); sample it without shards"
        ) from exc
    return split


def check_split(split: RowSplit, compiled: CompiledModel, model, points: np.ndarray) -> None:
    """Refuse (``UserError`` naming the observed variable) unless the split log-density equals
    the whole one at ``points``: the backstop for rows the structure does not show mixing."""
    import jax

    rtol = SPLIT_RTOL[compiled.float_dtype]
    whole = jax.jit(compiled.logdensity)
    for flat, got in zip(points, _split_values(split, points), strict=True):
        expected = float(whole(flat, compiled.data))
        if _close(got, expected, rtol):
            continue
        # Which observed variable: its shards' sum against PyTensor's sum over all its rows.
        reference_fn = model.compile_fn(
            [t.sum() for t in model.logp(vars=model.observed_RVs, sum=False)],
            inputs=list(model.value_vars),
            point_fn=False,
            mode="FAST_COMPILE",
        )
        values = [
            np.asarray(v, dtype=var.dtype)
            for v, var in zip(compiled.unravel(np.asarray(flat)), model.value_vars, strict=True)
        ]
        reference = [float(v) for v in reference_fn(*values)]
        parts = [
            split.shard_terms(flat, split.shard_rows(s), split.likelihood_data)
            for s in range(split.layout.shards)
        ]
        for name, ref, *shard_parts in zip(split.observed_names, reference, *parts, strict=True):
            total = float(sum(shard_parts))
            if not _close(total, ref, rtol * 1e3):  # PyTensor's own rounding besides the split's
                raise _refuse(
                    name,
                    f"does not split over rows: its log-probability summed over "
                    f"{split.layout.shards} shards is {total:.6g}, over all rows at once "
                    f"{ref:.6g} (its terms mix rows, e.g. a cumulative sum, or a data array of "
                    "the rows' length that is not per row)",
                )
        raise UserError(
            f"--data-shards: the split log-density ({got:.9g}) differs from the model's "
            f"({expected:.9g}); sample it without shards"
        )


def _split_values(split: RowSplit, points: np.ndarray) -> list[float]:
    """:meth:`RowSplit.logdensity` at each of ``points``, a shard at a time with its rows as the
    program's arguments: one program for every shard, and one shard's rows on the device at
    once (as constants of a program, ``jit(split.logdensity)``, every shard's rows would be
    copied into it)."""
    import jax

    prior, likelihood = jax.jit(split.prior), jax.jit(split.shard_likelihood)
    totals = [float(prior(flat, split.prior_data)) for flat in points]
    for shard in range(split.layout.shards):
        rows = jax.device_put(split.shard_rows(shard))
        for i, flat in enumerate(points):
            totals[i] += float(likelihood(flat, rows, split.likelihood_data))
        del rows
    return totals


def _close(got: float, expected: float, rtol: float) -> bool:
    if not np.isfinite(expected):
        return got == expected or (np.isnan(got) and np.isnan(expected))
    return abs(got - expected) <= rtol * max(1.0, abs(expected))
