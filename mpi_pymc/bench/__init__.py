"""Allocation benchmarks: ``python -m mpi_pymc bench weak|strong|chains|baseline|answer MODEL.py``.

Each point launches a real ``mpi_pymc run`` (under ``mpirun`` or, inside a SLURM allocation,
``srun``), times the whole subprocess and reads the output file's root attributes (``timings``,
``diagnostics``, ``versions``...). From those it derives the figures an allocation proposal needs:
draws/s, min bulk ESS per wall second (start-up and compile included), ESS per rank-hour and per
node-hour, max R-hat and parallel efficiency. ``baseline`` runs what PyMC users run today
(``pm.sample`` with its default sampler, numpyro vectorized and parallel, nutpie) on the same
machine and model and reports how mpi_pymc compares. ``answer`` times launch-to-answer: an
``mpi_pymc run --until-ess N`` for each goal N against PyMC's numpyro path at its defaults.

Outputs into ``--outdir``: ``results.json``, ``results.md`` (a table to paste) and PNG plots.

Modules: :mod:`~mpi_pymc.bench.figures` (the arithmetic, pure), :mod:`~mpi_pymc.bench.report`
(markdown and strict JSON), :mod:`~mpi_pymc.bench.machine` (facts about this machine),
:mod:`~mpi_pymc.bench.launching` (the runs), :mod:`~mpi_pymc.bench.plots` (PNG) and
:mod:`~mpi_pymc.bench.cli` (options, validation, :func:`main`). This package re-exports what
the rest of the repository calls (``mpi_pymc.cli``, ``benchmarks/gpu_check.py``).
"""

from mpi_pymc.bench.cli import DEFAULT_SEED, add_parser, main
from mpi_pymc.bench.launching import BenchError, run_baseline, run_point
from mpi_pymc.bench.machine import machine_facts
from mpi_pymc.bench.report import clean_json, format_number

__all__ = [
    "DEFAULT_SEED",
    "BenchError",
    "add_parser",
    "clean_json",
    "format_number",
    "machine_facts",
    "main",
    "run_baseline",
    "run_point",
]
