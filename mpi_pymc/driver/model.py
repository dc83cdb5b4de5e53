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
    # Across ranks the shard group's processes must run byte-equal programs: one loaded from
    # JAX's persistent cache did not meet the other process's psum (it hung), so none is used.
    configure_jax(job.config.precision, persistent_cache=job.shard_comm is None)
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


def shard_the_data(job: Job, model, compiled):
    """``--data-shards S``: the log-density as the prior plus the sum of S row shards' likelihoods,
    one shard on each of the rank's S devices (model.row_shards, model.data_parallel). The model
    is refused, on every rank, when its likelihood is not a sum over independent rows: by its
    structure, or where the split differs from the whole log-density at a few points."""
    shards = job.config.data_shards
    if shards == 1:
        return compiled

    def build():
        import dataclasses

        import jax
        import numpy as np

        from mpi_pymc.core.config import UserError
        from mpi_pymc.core.topology import shard_groups
        from mpi_pymc.model.data_parallel import data_parallel
        from mpi_pymc.model.row_shards import CHECK_POINTS, check_split, split_rows

        # The model's verdict first: a model that cannot be split needs no devices.
        split = split_rows(model, compiled, shards, job.config.data_row_dim)
        devices = jax.local_devices()
        if job.shard_comm is not None:
            # Across ranks (driver.settings.enter_shard_groups): the shard group's devices,
            # one per rank, are its JAX job's.
            if len(devices) != 1 or len(jax.devices()) != shards:
                raise UserError(
                    f"--data-shards {shards} across ranks needs one device in each of "
                    f"{shards} ranks, and JAX shows this rank {len(devices)} of "
                    f"{len(jax.devices())}"
                )
            devices = jax.devices()
        else:
            # Every device a rank binds does work, and one mesh of S devices holds the rows.
            shard_groups(shards, job.size, len(devices))
        jitter = np.random.default_rng(0).uniform(-1.0, 1.0, (CHECK_POINTS, compiled.dimension))
        points = np.vstack([compiled.initial_flat, compiled.initial_flat + jitter])
        check_split(split, compiled, model, points.astype(compiled.initial_flat.dtype))
        logdensity, data = data_parallel(split, devices)
        # The whole data's arrays are dropped with the old ``data``: the shards replace them
        # (``constrain_data`` is its own).
        return dataclasses.replace(compiled, logdensity=logdensity, data=data)

    return _on_every_rank(job.comm, "splitting the data into shards", build)


def share_data(job: Job, platform: str, compiled):
    """CPU ranks of a node read one copy of the data (see node_data); not with data shards,
    whose rows are placed on the rank's devices.

    ``MPI_PYMC_SHARE_DATA=0`` opts out.
    """
    if (
        platform != "cpu"
        or job.config.data_shards > 1
        or os.environ.get("MPI_PYMC_SHARE_DATA", "1") == "0"
    ):
        return None
    from mpi_pymc.model.node_data import share_on_node

    # The log-density's arrays, then those only the posterior's Deterministics read; an array
    # both read is shared once.
    arrays = list(compiled.data)
    arrays += [a for a in compiled.constrain_data if not any(a is b for b in compiled.data)]
    node_data = share_on_node(job.comm, arrays)
    by_id = {id(a): shared for a, shared in zip(arrays, node_data.arrays, strict=True)}
    compiled.data = tuple(node_data.arrays[: len(compiled.data)])
    compiled.constrain_data = tuple(by_id[id(a)] for a in compiled.constrain_data)
    return node_data
