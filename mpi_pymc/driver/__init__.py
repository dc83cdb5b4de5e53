"""The driver: one run as a list of phases (``run``), each phase in its own module.

A run goes ``settings`` (validate, bind devices) -> ``claim`` (lock and judge the output path)
-> ``resume`` (root seed, the checkpoint to continue) -> ``model`` (load, translate, agree on
the fingerprint) -> ``chains`` (starting points, sampler state, compiled programs) ->
``output_file`` (free-space check, open the writer) -> ``warmup`` -> ``chunks`` (draw, write,
checkpoint, check the goal) -> ``finish`` (trim, diagnose, summary, post-processing). What the
phases share is in ``job``; ``signals`` and ``checkpointing`` serve several phases;
``messages`` words what rank 0 prints.

Layer: imports every lower package (core, model, sampling, diagnostics, output, postprocess)
and ``mpi_pymc.driver.progress``; the front doors (CLI, Python API) import it, never the reverse.
"""

from mpi_pymc.driver.job import RunResult
from mpi_pymc.driver.run import run
from mpi_pymc.driver.signals import ignore_stop_signals

__all__ = ["RunResult", "ignore_stop_signals", "run"]
