"""The post-processing pass itself: every rank computes its chains' groups block by block and
writes them with the run's own writer (see :mod:`mpi_pymc.postprocess`)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from mpi_pymc.core.config import UserError
from mpi_pymc.core.errors import AgreedError, on_every_rank
from mpi_pymc.postprocessing.plan import (
    Plan,
    _needed_bytes,
    check_disk,
    groups_to_replace,
    make_plan,
    plan_line,
    read_run_facts,
)
from mpi_pymc.postprocessing.pointwise import Pointwise, build_pointwise, check_same_model
from mpi_pymc.postprocessing.settings import PostprocessConfig, PostprocessResult, validate

if TYPE_CHECKING:
    import numpy as np


def compute_chain(writer, pointwise: Pointwise, program, plan: Plan, chain: int, root_seed: int):
    """Every block of one chain: read its posterior draws, evaluate, write."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mpi_pymc.core.seeding import predictive_key

    chain_key = jnp.asarray(predictive_key(root_seed, chain))
    kept = plan.kept_draws
    step = int(kept[1] - kept[0]) if len(kept) > 1 else 1
    for start in range(0, len(kept), plan.block):
        draws = kept[start : start + plan.block]
        window = slice(int(draws[0]), int(draws[-1]) + 1, step)
        # The last block is padded to the full size: one compiled program for every block.
        pad = plan.block - len(draws)
        free = [
            _pad(
                np.asarray(writer.read("posterior", name, chain, window), pointwise.float_dtype),
                pad,
            )
            for name in pointwise.free_names
        ]
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(chain_key, _pad(draws, pad))
        values = program(keys, free, pointwise.data)
        for (group, var), value in zip(pointwise.outputs, values, strict=True):
            writer.write(group, var.name, chain, start, np.asarray(value)[: len(draws)])


def _pad(values: np.ndarray, pad: int) -> np.ndarray:
    import numpy as np

    if pad == 0:
        return values
    return np.concatenate([values, np.repeat(values[-1:], pad, axis=0)])


def postprocess(config: PostprocessConfig, comm=None, echo=print, model=None) -> PostprocessResult:
    """Add the requested groups to ``config.out`` on every rank of ``comm``; rank 0 reports
    through ``echo``. ``model``: a ``pm.Model`` instead of ``config.model_path``."""
    import jax
    from mpi4py import MPI

    from mpi_pymc.core import seeding, topology
    from mpi_pymc.model.compile import compile_model
    from mpi_pymc.output import added_groups, storage
    from mpi_pymc.output.layout import Layout

    comm = comm if comm is not None else MPI.COMM_WORLD.Clone()
    rank, size = comm.Get_rank(), comm.Get_size()
    t_start = time.perf_counter()

    def say(line: str) -> None:
        if rank == 0:
            echo(line)

    on_every_rank(comm, "validating the settings", lambda: validate(config))
    facts = comm.bcast(
        on_every_rank(
            comm, "reading the output", lambda: read_run_facts(config.out) if rank == 0 else None
        ),
        root=0,
    )
    if facts.chains < size:
        raise AgreedError(f"the run has {facts.chains} chains: launch at most {facts.chains} ranks")
    if facts.io == "mpio" and not storage.mpio_available():
        raise AgreedError(
            f"'{config.out}' was written by the mpio writer: post-process it with an "
            "MPI-enabled h5py (make parallel-hdf5)"
        )
    replaced = on_every_rank(comm, "checking the groups", lambda: groups_to_replace(config, facts))
    on_every_rank(comm, "binding devices", lambda: topology.bind(comm, config.gpus_per_rank))
    model = _load(comm, config, model)
    compiled = on_every_rank(
        comm,
        "compiling the model",
        lambda: compile_model(model, facts.precision),
        catch=(Exception,),
        reword=lambda exc: f"could not translate the model to JAX: {type(exc).__name__}: {exc}",
    )
    note = on_every_rank(comm, "checking the model", lambda: check_same_model(compiled, facts))
    if note:
        say(note)
    precision = config.precision or facts.precision
    pointwise = on_every_rank(
        comm,
        "building the post-processing programs",
        lambda: build_pointwise(model, compiled, config, precision),
        catch=(Exception,),
        reword=_reword,
    )
    plan = make_plan(config, facts, pointwise)
    free = comm.bcast(
        on_every_rank(
            comm,
            "checking the disk space",
            lambda: (
                check_disk(config.out, _needed_bytes(plan, facts, config.out))
                if rank == 0
                else None
            ),
        ),
        root=0,
    )
    say(plan_line(config, facts, plan, pointwise, free))
    for group in replaced:
        state = "complete" if facts.groups[group] else "incomplete (interrupted pass)"
        say(f"replacing the {state} {group} group")
    chain_group = seeding.chain_group(facts.chains, size, rank)
    layout = Layout(
        chains=facts.chains,
        draws=len(plan.kept_draws),
        chunk_draws=plan.chunk_draws,
        coords=pointwise.coords,
        draw_groups={g: [v for group, v in pointwise.outputs if group == g] for g in config.groups},
    )
    attrs = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inference_library": "mpi_pymc",
        "thin": config.thin,
        "precision": precision,
    }
    writer = on_every_rank(
        comm,
        "opening the output",
        lambda: added_groups.open_group_writer(
            facts.io, config.out, comm, layout, chain_group, plan.kept_draws, attrs
        ),
        catch=(OSError,),
        reword=str,
    )
    program = jax.jit(jax.vmap(pointwise.function, in_axes=(0, 0, None)))
    t_compute = time.perf_counter()
    for chain in chain_group:
        _injected_kill(chain)
        compute_chain(writer, pointwise, program, plan, chain, facts.root_seed)
    compute_seconds = time.perf_counter() - t_compute
    writer.finish()
    seconds = time.perf_counter() - t_start
    say(
        f"wrote {' and '.join(config.groups)} for {facts.chains} chains x "
        f"{len(plan.kept_draws)} draws into {config.out} ({facts.io}) in {seconds:.1f}s"
    )
    if facts.io == "shards" and facts.packed:  # the added groups' shards go in too
        from mpi_pymc.output.packing import pack_on_rank0

        pack_on_rank0(comm, config.out, echo=echo)
    return PostprocessResult(
        out=config.out,
        groups=config.groups,
        chains=facts.chains,
        draws=len(plan.kept_draws),
        bytes_written=plan.bytes_to_write,
        timings={"total": seconds, "compute_and_write": compute_seconds},
    )


def _reword(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    return f"could not build the post-processing programs: {type(exc).__name__}: {exc}"


def _load(comm, config: PostprocessConfig, model):
    """The given model, or the model file imported on every rank (failures agreed)."""
    from mpi_pymc.model.loading import check_model, load_model

    if model is not None:
        on_every_rank(comm, "checking the model", lambda: check_model(model, "the model"))
        return model
    return on_every_rank(
        comm,
        "loading the model",
        lambda: load_model(str(config.model_path), config.model_name),
        catch=(Exception,),
    )


def _injected_kill(chain: int) -> None:
    """Test hook: ``MPI_PYMC_KILL_AT_CHAIN=C`` SIGKILLs the rank about to compute chain ``C``,
    after others may have written theirs: a pass killed half-way, for the tests."""
    if os.environ.get("MPI_PYMC_KILL_AT_CHAIN") == str(chain):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
