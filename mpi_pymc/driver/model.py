"""Phase 4, model and fingerprint: import the model on every rank, translate it to JAX, agree on
its fingerprint, and share the data on a node."""

from __future__ import annotations

import os
import warnings

from mpi_pymc.core.errors import AgreedError
from mpi_pymc.core.errors import on_every_rank as _on_every_rank
from mpi_pymc.driver.job import Job
from mpi_pymc.driver.settings import configure_jax


def load_the_model(job: Job, model=None):
    """Import the model file on every rank (user code runs here), or check the given model."""
    configure_jax(job.config.precision)
    warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
    from mpi_pymc.model.loading import check_model, load_model

    if model is not None:
        _on_every_rank(job.comm, "checking the model", lambda: check_model(model, "the model"))
        return model
    # Any failure to load is agreed on, never left to hang the others.
    return _on_every_rank(
        job.comm,
        "loading the model",
        lambda: load_model(str(job.config.model_path), job.config.model_name),
        catch=(Exception,),
    )


def compile_and_fingerprint(job: Job, model):
    """Translate the model to JAX on every rank; the ranks' fingerprints must agree."""
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.model.translation import TranslationError

    compiled = _on_every_rank(
        job.comm,
        "compiling the model",
        lambda: compile_model(model, job.config.precision),
        catch=(Exception,),
        reword=lambda exc: (
            str(exc)
            if isinstance(exc, TranslationError)
            else f"could not translate the model to JAX: {type(exc).__name__}: {exc}"
        ),
    )
    disagreement = fingerprint_disagreement(job.comm.allgather(compiled.fingerprint))
    if disagreement:
        raise AgreedError(disagreement)
    return compiled


def fingerprint_disagreement(fingerprints: list[str]) -> str | None:
    """The error for ranks that built different models, or None when all agree."""
    if len(set(fingerprints)) <= 1:
        return None
    groups: dict[str, list[int]] = {}
    for rank, fingerprint in enumerate(fingerprints):
        groups.setdefault(fingerprint, []).append(rank)
    described = "; ".join(f"ranks {v} -> {k[:12]}" for k, v in groups.items())
    return (
        f"ranks built different models ({described}): every rank must build the same model — "
        "seed any random data in the model file (e.g. np.random.default_rng(1234))"
    )


def share_data(job: Job, platform: str, compiled):
    """CPU ranks of a node read one copy of the data (see node_data).

    ``MPI_PYMC_SHARE_DATA=0`` opts out.
    """
    if platform != "cpu" or os.environ.get("MPI_PYMC_SHARE_DATA", "1") == "0":
        return None
    from mpi_pymc.model.node_data import share_on_node

    node_data = share_on_node(job.comm, compiled.data)
    compiled.data = tuple(node_data.arrays)
    return node_data
