"""Phase 5, init and compile: this rank's chain group, its starting points and sampler state, the
translation check, and the warmup and sampling programs compiled (in the background on a GPU
rank)."""

from __future__ import annotations

import threading

import numpy as np

from mpi_pymc.core.errors import on_every_rank as _on_every_rank
from mpi_pymc.driver.checkpointing import restore_state
from mpi_pymc.driver.job import Chains, Job
from mpi_pymc.output.checkpoint import Checkpoint


def init_chains(
    job: Job, compiled, model, ckpt: Checkpoint | None, platform: str = "cpu"
) -> Chains:
    """Initial points and sampler states of this rank's chain group (or the checkpoint's)."""
    from mpi_pymc.core import seeding
    from mpi_pymc.sampling.chain_group import ChainGroupSampler, initial_positions

    root_seed = int(job.config.seed or 0)
    chain_group = seeding.chain_group(int(job.config.chains or 0), job.size, job.rank)
    sampler = ChainGroupSampler(compiled, job.config)
    _on_every_rank(
        job.comm, "placing the chains on devices", lambda: sampler.placement(len(chain_group))
    )
    compiling = BackgroundCompile(job, sampler, len(chain_group), background=platform != "cpu")
    starts = _on_every_rank(
        job.comm,
        "initialising the chains",
        lambda: initial_positions(compiled, model, root_seed, chain_group),
        catch=(ValueError,),
        reword=str,
    )
    if job.config.check_logp:
        check_translation(job, compiled, model, starts)
    state = sampler.init(seeding.sampler_keys(root_seed, chain_group), starts.positions)
    if ckpt is not None:
        state = restore_state(state, ckpt, chain_group)
    return Chains(compiled, chain_group, root_seed, sampler, state, ckpt, compiling)


def record_devices(binding, chains: Chains):
    """The binding, with how many JAX devices the rank has and how many of them run chains."""
    from dataclasses import replace

    placement = chains.sampler.placement(len(chains.chain_group))
    # Data shards: every device of the mesh advances every chain of the rank (its own rows).
    used = placement.used * chains.sampler.data_shards
    return replace(binding, local_devices=len(chains.sampler.devices), chain_devices=used)


def check_translation(job: Job, compiled, model, starts) -> None:
    """Every rank compares the JAX log-density at the model's initial point and at up to
    ``JITTERED_POINTS`` of its chains' starting points with PyTensor's own, before any draw."""
    from mpi_pymc.model.translation import JITTERED_POINTS, check_log_density

    count = min(JITTERED_POINTS, len(starts.positions))
    points = np.vstack([compiled.initial_flat, starts.positions[:count]])
    values = np.concatenate([[starts.initial_logdensity], starts.logdensity[:count]])
    _on_every_rank(
        job.comm,
        "checking the translation",
        lambda: check_log_density(model, compiled, points, values),
    )


class BackgroundCompile:
    """This rank's share of the warmup and sampling programs, compiled from the state's shapes.
    The first ranks compile one program each; every rank then loads them from the persistent
    cache instead of compiling them again.

    With ``background`` (a GPU rank: its host cores are otherwise idle while it starts) the
    compile runs in a thread while the chains' initial points and states are computed (XLA
    compiles without the GIL); otherwise when :meth:`join` is called. A CPU rank gains nothing
    from the thread: measured on this project's 2-core machine with one and two ranks (eight
    schools), the init compile and the thread's then shared the cores and the start-up took as
    long as one after the other."""

    def __init__(self, job: Job, sampler, chains: int, background: bool):
        # One program per rank, the last rank taking those left over.
        programs = sampler.program_names()
        last = job.rank == job.size - 1
        self.mine = programs[job.rank :] if last else programs[job.rank : job.rank + 1]
        self.sampler, self.chains = sampler, chains
        self.error: BaseException | None = None
        self.thread = None
        if self.mine and background:
            abstract = sampler.abstract_state(chains)
            self.thread = threading.Thread(
                target=self._compile, args=(sampler, abstract), daemon=True, name="precompile"
            )
            self.thread.start()

    def _compile(self, sampler, abstract) -> None:
        try:
            sampler.precompile(abstract, self.mine, abstract=True, chains=self.chains)
        except BaseException as exc:  # noqa: BLE001  (re-raised by join, on the main thread)
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
        elif self.mine:
            self._compile(self.sampler, self.sampler.abstract_state(self.chains))
        if self.error is not None:
            raise self.error


def compile_programs(job: Job, chains: Chains) -> None:
    """Wait for this rank's programs (:class:`BackgroundCompile`), then for every rank's."""
    if chains.compiling is not None:
        chains.compiling.join()
    job.comm.Barrier()
