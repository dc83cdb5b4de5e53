"""JAX's distributed runtime for the processes of an MPI communicator, so that a compiled
program's collectives (a ``psum`` inside a ``shard_map``) run across them, with no host round
trip.

The communicator's rank 0 picks a free port and broadcasts ``host:port`` with mpi4py, so no
launcher-specific cluster detection is needed (the ranks of one communicator are the JAX
processes, its ranks their process ids). CPU collectives go through gloo (JAX's CPU default
runs none across processes); on GPUs JAX's default (NCCL) stays.

The processes then run one program (SPMD): each must compile the same one, so source locations
are left out of the programs (see :func:`start_jax_distributed`).

It must run before anything uses a JAX backend: ``jax.distributed.initialize`` refuses
afterwards. A failure (the coordinator unreachable, a backend already started) ends in one line
and ``EXIT_USER`` on every rank of the communicator, agreed like any other setting.
"""

from __future__ import annotations

import socket

from mpi_pymc.core.config import UserError
from mpi_pymc.core.errors import on_every_rank

__all__ = ["start_jax_distributed"]

# Seconds a process waits for the others to reach the coordinator (JAX's default is 300 s: a
# rank that failed before starting would hold the others for five minutes).
INIT_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _coordinator(comm) -> str:
    """``host:port`` of the coordinator on the communicator's rank 0, known to every rank."""
    address = None
    if comm.Get_rank() == 0:
        host = socket.gethostname()
        try:
            socket.getaddrinfo(host, None)
        except OSError:  # a host name the others cannot resolve either: only one node then
            host = "127.0.0.1"
        address = f"{host}:{_free_port()}"
    return comm.bcast(address, root=0)


def start_jax_distributed(comm, platform: str = "cpu") -> None:
    """Make the ranks of ``comm`` one JAX job: ``jax.devices()`` is then every rank's devices,
    ``jax.local_devices()`` this rank's. A communicator of one rank is left as it is."""
    if comm.Get_size() == 1:
        return
    address = _coordinator(comm)

    def start() -> None:
        import jax

        if platform == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # Every process must compile the very same program: the source locations JAX writes
        # into it name the files PyTensor's JAX functions were written to, random temporary
        # names that differ between processes, and with them (JAX 0.12.1, gloo) the processes
        # wait in the psum for each other forever. Without locations the programs are equal.
        jax.config.update("jax_include_full_tracebacks_in_locations", False)
        jax.config.update("jax_traceback_in_locations_limit", 0)
        try:
            jax.distributed.initialize(
                address,
                num_processes=comm.Get_size(),
                process_id=comm.Get_rank(),
                initialization_timeout=INIT_TIMEOUT_S,
            )
        except Exception as exc:  # JAX raises RuntimeError or XlaRuntimeError, text varies
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"starting JAX's distributed runtime over {comm.Get_size()} ranks "
                f"(coordinator {address}) failed: {first}"
            ) from exc

    on_every_rank(comm, "starting JAX's distributed runtime", start)
