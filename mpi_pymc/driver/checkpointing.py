"""Checkpoints during a run: every rank writes its chains' states after each chunk, rank 0 the
manifest; a resumed run's state is restored from them."""

from __future__ import annotations

import errno
import os
import time

import numpy as np

from mpi_pymc import __version__
from mpi_pymc.core.config import RunConfig, UserError
from mpi_pymc.core.errors import AgreedError, agree


class CheckpointSaver:
    """After each chunk: every rank writes its chains' states, then rank 0 the manifest
    ``OUT.ckpt`` naming them (``checkpoint.py``)."""

    def __init__(
        self, config: RunConfig, compiled, root_seed: int, comm, chain_group: range, everyone=None
    ):
        """``comm``: the ranks whose chains this checkpoint holds; ``everyone``: every rank of
        the job (with data shards across ranks, each shard writes its own checkpoint), over
        which a failed write is agreed, so no shard goes on alone into its collective."""
        from mpi_pymc.output.checkpoint import checkpoint_path

        self.path = checkpoint_path(str(config.out))
        self.comm = comm
        self.everyone = comm if everyone is None else everyone
        self.config = config
        self.chain_group = chain_group
        # Names this run's parts apart from a resumed run's, whose parts stay until replaced.
        self.run_label = comm.bcast(os.urandom(4).hex() if comm.Get_rank() == 0 else None, 0)
        self.saves = 0
        self.seconds = 0.0  # spent in save(), part of the warmup and io phases
        self.meta = {
            "settings": config.settings_for_fingerprint(),
            "fingerprint": compiled.fingerprint,
            "root_seed": str(root_seed),
            "chains": config.chains,
            "sampler": config.sampler,
            "version": __version__,
        }

    def remove(self) -> None:
        """A finished run needs no checkpoint."""
        from mpi_pymc.output.checkpoint import remove_checkpoint

        if self.comm.Get_rank() == 0:
            remove_checkpoint(self.path)

    def save(self, state, iteration: int, draws_done: int) -> None:
        import jax

        from mpi_pymc.output.checkpoint import write_manifest, write_part

        t0 = time.perf_counter()
        self.saves += 1
        label = f"{self.run_label}-{self.saves:06d}"
        leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]

        from mpi_pymc.output.layout import write_failure

        def failed(where: str, exc: OSError) -> UserError:
            return UserError(f"{write_failure(where, exc)}; {what_is_kept(self.config)}")

        part, error = None, None
        try:
            injected_write_fault(self.everyone.Get_rank(), draws_done, "checkpoint")
            part = write_part(self.path, label, self.chain_group, leaves)
        except OSError as exc:
            error = failed(self.path, exc)
        agree(self.everyone, error, "writing the checkpoint")
        parts = self.comm.gather(part, root=0)
        if self.comm.Get_rank() == 0:
            meta = {**self.meta, "iteration": iteration, "draws_done": draws_done}
            try:
                write_manifest(self.path, meta, parts)
            except OSError as exc:
                error = failed(self.path, exc)
        agree(self.everyone, error, "writing the checkpoint")
        self.seconds += time.perf_counter() - t0


def injected_write_fault(rank: int, draw: int, what: str) -> None:
    """Test hook: ``MPI_PYMC_INJECT_WRITE_FAULT=RANK:DRAW[:WHAT]`` makes that rank's (of every
    rank of the job) writes of ``WHAT`` (``draws``, the default, or ``checkpoint``) fail as a
    full disk would, from that draw on."""
    spec = os.environ.get("MPI_PYMC_INJECT_WRITE_FAULT")
    if spec:
        fault_rank, fault_draw, *rest = spec.split(":")
        if (rank, what) == (int(fault_rank), rest[0] if rest else "draws") and draw >= int(
            fault_draw
        ):
            raise OSError(errno.ENOSPC, f"injected write fault at draw {draw}")


def restore_state(fresh_state, ckpt, chain_group: range):
    """Replace a freshly initialised state by the checkpointed one for this rank's chains."""
    import jax
    import jax.numpy as jnp

    fresh, treedef = jax.tree_util.tree_flatten(fresh_state)
    if len(fresh) != len(ckpt.leaves):
        raise AgreedError(
            "--resume: the checkpoint does not match this sampler's state layout (written by "
            "another version of mpi_pymc): start the run again without --resume"
        )
    restored = []
    offset = chain_group.start - ckpt.chains.start
    for new, saved in zip(fresh, ckpt.leaves, strict=True):
        part = saved[offset : offset + len(chain_group)]
        if part.shape != tuple(new.shape) or part.dtype != new.dtype:
            raise AgreedError(
                f"--resume: checkpoint state {part.shape}/{part.dtype} does not fit "
                f"{tuple(new.shape)}/{new.dtype}: was it written by another version?"
            )
        restored.append(jnp.asarray(part))
    return jax.tree_util.tree_unflatten(treedef, restored)


def what_is_kept(config: RunConfig, draws_kept: int | None = None) -> str:
    """After a failed write: what the user still has, and how to go on."""
    from mpi_pymc.output.checkpoint import checkpoint_path

    draws = "every flushed draw" if draws_kept is None else f"its first {draws_kept} draws"
    return (
        f"{config.out} keeps {draws} of every chain and "
        f"{checkpoint_path(str(config.out))} the last good checkpoint: free space or fix the file "
        "system, then continue with --resume"
    )
