"""Phase 6, the output file: the writer (parallel HDF5 or shards) with the run's root attributes,
after the free-space check."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import numpy as np

from mpi_pymc import __version__
from mpi_pymc.core.config import RunConfig
from mpi_pymc.core.errors import AgreedError
from mpi_pymc.core.errors import on_every_rank as _on_every_rank
from mpi_pymc.core.slurm import slurm_end_time
from mpi_pymc.driver.claim import _remove_previous
from mpi_pymc.driver.job import Chains, Job


def job_end_time(job: Job) -> float | None:
    """The SLURM job's end time as rank 0 reads it (None outside a job)."""
    return job.comm.bcast(slurm_end_time() if job.rank == 0 else None, root=0)


def open_output(job: Job, chains: Chains, binding, node_data):
    """Open the writer (parallel HDF5 or shards) with the run's root attributes."""
    from mpi_pymc.output import storage
    from mpi_pymc.output.layout import layout_for

    config, out = job.config, str(job.config.out)
    io = storage.choose_io(config.io)
    if io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            "--io mpio needs an MPI-enabled h5py (h5py.get_config().mpi is False): "
            "run `make parallel-hdf5` or use --io shards"
        )
    chain_count = int(config.chains or 0)
    layout = layout_for(chains.compiled, chain_count, config.draws, config.chunk_draws)
    attrs = root_attrs(
        config,
        job.size,
        chains.compiled,
        bindings=job.comm.allgather(binding.as_dict()),
        shared_bytes=job.comm.allgather(node_data.shared_bytes if node_data else 0),
        job_end=job_end_time(job),
    )
    check_disk_space(job, layout, io, chains)
    if config.overwrite:
        _on_every_rank(
            job.comm,
            "preparing the output",
            lambda: _remove_previous(out) if job.rank == 0 else None,
            catch=(OSError,),
            reword=lambda exc: f"cannot remove existing '{out}': {exc}",
        )
    ckpt = chains.ckpt
    writer = storage.open_writer(
        io, out, job.comm, layout, chains.chain_group, attrs,
        resume=ckpt is not None, draw_start=ckpt.draws_done if ckpt is not None else 0,
    )  # fmt: skip
    if ckpt is not None:
        writer.mark_completed(np.full(chain_count, ckpt.draws_done, dtype=np.int64))
    job.writer = writer
    return writer, io


def check_disk_space(job: Job, layout, io: str, chains: Chains) -> None:
    """Refuse, before anything is written, a run whose output and checkpoints would not fit on
    their file system (every dataset is allocated up front, so its size is known)."""
    import jax

    from mpi_pymc.output import disk_space
    from mpi_pymc.output.checkpoint import checkpoint_files, checkpoint_path
    from mpi_pymc.output.layout import output_bytes, shard_dir

    config, out = job.config, str(job.config.out)
    leaves = jax.tree_util.tree_leaves(chains.state)
    local_bytes = sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in leaves)
    resume = chains.ckpt is not None
    state_bytes = job.comm.allreduce(local_bytes)
    output = output_bytes(layout, io, job.size, resume=resume)
    checkpoint = disk_space.checkpoint_bytes(state_bytes, len(leaves), resume, job.size)
    freed = [out, str(shard_dir(out)), *checkpoint_files(checkpoint_path(out))]
    freed = freed if config.overwrite else []
    _on_every_rank(
        job.comm,
        "checking free disk space",
        lambda: disk_space.check(out, output, checkpoint, freed) if job.rank == 0 else None,
    )


def root_attrs(
    config: RunConfig, size: int, compiled, bindings, shared_bytes, job_end
) -> dict[str, Any]:
    """The output file's root attributes: how, where and with what this run sampled."""
    from mpi_pymc.core import seeding

    chains = int(config.chains or 0)
    return {
        "inference_library": "mpi_pymc",
        "inference_library_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root_seed": str(config.seed),
        "ranks": size,
        "chains": chains,
        "draws": config.draws,
        "tune": config.tune,
        "chain_groups": [[g.start, g.stop] for g in seeding.chain_groups(chains, size)],
        "settings": config.settings_for_fingerprint(),
        "stopping": {
            "until_ess": config.until_ess,
            "until_tail_ess": config.tail_goal,
            "until_rhat": config.until_rhat,
            "max_time": config.max_time,
            "job_end_time": job_end,
        },
        "binding": bindings,
        "node_shared_data_bytes": shared_bytes,
        "versions": versions(),
        "command_line": config.command_line or sys.argv,
        "model_path": os.path.abspath(config.model_path) if config.model_path else "",
        "model_fingerprint": compiled.fingerprint,
        "model_fingerprint_parts": compiled.fingerprint_parts,
    }


def versions() -> dict:
    import importlib.metadata as md

    from mpi4py import MPI

    found = {"python": platform.python_version(), "mpi_pymc": __version__}
    for name in (
        "pymc",
        "pytensor",
        "jax",
        "jaxlib",
        "numpyro",
        "blackjax",
        "mpi4py",
        "h5py",
        "arviz",
        "numpy",
    ):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    found["mpi_library"] = MPI.Get_library_version().replace("\0", "").splitlines()[0].strip()
    import h5py

    found["hdf5"] = h5py.version.hdf5_version
    return found
