"""``python -m mpi_pymc summary OUT.h5`` and ``mpi_pymc.summary(result)``: the diagnostics table
of a finished or partial file, or of the result ``sample()`` returned.

Serial: reads the posterior (only each chain's completed draws) on one process.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from mpi_pymc.core.config import UserError
from mpi_pymc.diagnostics.maths import all_diagnostics
from mpi_pymc.diagnostics.summary import convergence_warnings, divergence_warning, summary_table
from mpi_pymc.output.packing import check_shards


def _label(values) -> str:
    return values.decode() if isinstance(values, bytes) else str(values)


def read_posterior_matrix(path: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(chains, completed draws, parameters), column labels, and draws completed per chain."""
    if not os.path.exists(path):
        raise UserError(f"'{path}' does not exist: pass the --out file of a run")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"'{path}' is not a readable HDF5 file: {exc}") from None
    f.close()
    check_shards(path)  # a shards output copied without its shards: name them, never NaN
    f = h5py.File(path, "r")
    with f:
        if "posterior" not in f or "draws_completed" not in f.attrs:
            raise UserError(f"'{path}' is not an mpi_pymc output (no posterior/draws_completed)")
        completed = np.asarray(f.attrs["draws_completed"], dtype=np.int64)
        n = int(completed.min()) if completed.size else 0
        if n == 0:
            raise UserError(f"'{path}' holds no completed draws yet")
        group = f["posterior"]
        columns, labels = [], []
        for name, dset in group.items():
            if dset.ndim < 2 or name in ("chain", "draw") or dset.is_scale:
                continue
            data = np.asarray(dset[:, :n], dtype=np.float64)
            extra = data.shape[2:]
            axes = [dset.dims[i].keys()[0] if dset.dims[i].keys() else None for i in
                    range(2, dset.ndim)]  # fmt: skip
            coords = [[_label(v) for v in group[a][()]] if a else None for a in axes]
            columns.append(data.reshape(data.shape[0], n, -1))
            if not extra:
                labels.append(name)
                continue
            for index in np.ndindex(*extra):
                parts = [
                    labels_k[i] if labels_k is not None else str(i)
                    for labels_k, i in zip(coords, index, strict=True)
                ]
                labels.append(f"{name}[{', '.join(parts)}]")
    return np.concatenate(columns, axis=2), labels, completed


def print_summary(path: str, echo=print) -> dict:
    draws, labels, completed = read_posterior_matrix(path)
    stats = all_diagnostics(draws)
    chains, n = draws.shape[:2]
    echo(summary_table(labels, stats))
    with h5py.File(path, "r") as f:
        diverging = f["sample_stats/diverging"][:, :n] if "sample_stats/diverging" in f else None
    for line in _warnings(stats, labels, chains, diverging):
        echo(f"warning: {line}")
    total = int(completed.max())
    status = "complete" if completed.min() == completed.max() else "uneven"
    echo(f"{chains} chains x {n} draws used from {path} (draws completed per chain: "
         f"min {int(completed.min())}, max {total}; {status})")  # fmt: skip
    return stats


def result_summary(result, echo=print) -> str:
    """Print and return the table of a result object (``arviz.InferenceData`` or the
    ``xarray.DataTree`` of ArviZ 1), then the CLI's warnings; each chain's completed draws only
    (the ``draws_completed`` attribute of a partial run)."""
    posterior = _posterior_dataset(result)
    columns, labels = [], []
    for name, values in posterior.data_vars.items():
        if values.dims[:2] != ("chain", "draw"):
            continue
        data = np.asarray(values.values, dtype=np.float64)
        columns.append(data.reshape(data.shape[0], data.shape[1], -1))
        extra = values.dims[2:]
        if not extra:
            labels.append(str(name))
            continue
        coords = [[_label(v) for v in posterior[d].values] for d in extra]
        for index in np.ndindex(*data.shape[2:]):
            parts = [coords[k][i] for k, i in enumerate(index)]
            labels.append(f"{name}[{', '.join(parts)}]")
    if not columns:
        raise UserError("the result holds no posterior draws to summarise")
    draws = np.concatenate(columns, axis=2)
    completed = result.attrs.get("draws_completed")
    if completed is not None and np.size(completed):
        draws = draws[:, : int(np.min(completed))]
    stats = all_diagnostics(draws)
    table = summary_table(labels, stats)
    echo(table)
    stats_group = getattr(result, "sample_stats", None)
    diverging = None
    if stats_group is not None and "diverging" in stats_group:
        diverging = np.asarray(stats_group["diverging"].values)[:, : draws.shape[1]]
    for line in _warnings(stats, labels, draws.shape[0], diverging):
        echo(f"warning: {line}")
    return table


def _warnings(stats: dict, labels: list[str], chains: int, diverging) -> list[str]:
    """The CLI's warnings: divergences (when the draws' ``diverging`` is known), then R-hat/ESS."""
    found = []
    if diverging is not None:
        found += divergence_warning(int(np.sum(diverging)), int(np.size(diverging)))
    return [*found, *convergence_warnings(stats, chains, labels)]


def _posterior_dataset(result):
    """The posterior group as an ``xarray.Dataset``, from ArviZ 0.x or 1.x."""
    if hasattr(result, "posterior") and hasattr(result.posterior, "data_vars"):
        return result.posterior  # InferenceData
    try:
        return result["posterior"].to_dataset()  # DataTree
    except (KeyError, TypeError, AttributeError):
        raise UserError(
            f"summary() takes what sample() returns; a {type(result).__name__} has no posterior"
        ) from None
