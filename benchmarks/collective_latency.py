"""Latency of one allreduce of a log-density and its gradient across MPI processes: JAX's own
collectives (``jax.distributed`` + a ``psum`` inside a jitted ``shard_map``, CPU collectives by
gloo) against a plain mpi4py ``Allreduce`` from the host. Issue #35 part 2, step D.

    mpirun -n 2 python benchmarks/collective_latency.py [--dim 21] [--calls 2000]

Rank 0 prints one JSON line. The jax.distributed coordinator address goes from rank 0 to the
others through mpi4py (no launcher-specific cluster detection needed).
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import numpy as np
from mpi4py import MPI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=21, help="values summed: 1 + gradient size")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    # mpi4py baseline: the host round trip a leapfrog would pay per likelihood sum.
    local = np.full(args.dim, float(rank + 1))
    total = np.empty_like(local)
    for _ in range(50):
        comm.Allreduce(local, total)
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(args.calls):
        comm.Allreduce(local, total)
    mpi_us = (time.perf_counter() - start) / args.calls * 1e6

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = comm.bcast(f"127.0.0.1:{_free_port()}" if rank == 0 else None)
    t0 = time.perf_counter()
    jax.distributed.initialize(address, num_processes=size, process_id=rank)
    init_s = time.perf_counter() - t0
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    mine = jnp.full((1, args.dim), float(rank + 1))
    global_in = jax.make_array_from_single_device_arrays(
        (size, args.dim), sharding, [jax.device_put(mine, jax.local_devices()[0])]
    )
    summed = jax.jit(
        jax.shard_map(
            lambda x: jax.lax.psum(x, "data"),
            mesh=mesh,
            in_specs=PartitionSpec("data"),
            out_specs=PartitionSpec("data"),
        )
    )
    out = summed(global_in)
    value = np.asarray(out.addressable_data(0))
    expected = sum(range(1, size + 1))
    correct = bool(np.all(value == expected))
    for _ in range(50):
        out = summed(global_in)
    out.block_until_ready()
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(args.calls):
        out = summed(global_in)
        out.block_until_ready()
    jax_us = (time.perf_counter() - start) / args.calls * 1e6

    # Inside one program: many psums in a loop (as leapfrogs in a NUTS trajectory), no host
    # synchronisation between them.
    loops = 1000

    def body(_, x):
        return jax.lax.psum(x, "data") / size

    looped = jax.jit(
        jax.shard_map(
            lambda x: jax.lax.fori_loop(0, loops, body, x),
            mesh=mesh,
            in_specs=PartitionSpec("data"),
            out_specs=PartitionSpec("data"),
            check_vma=False,
        )
    )
    looped(global_in).block_until_ready()
    comm.Barrier()
    start = time.perf_counter()
    looped(global_in).block_until_ready()
    loop_us = (time.perf_counter() - start) / loops * 1e6
    found = comm.gather(
        {
            "mpi4py_allreduce_us": mpi_us,
            "jax_psum_call_us": jax_us,
            "jax_psum_in_loop_us": loop_us,
            "init_s": init_s,
            "correct": correct,
        }
    )
    if rank == 0:
        print(
            json.dumps(
                {
                    "ranks": size,
                    "dim": args.dim,
                    "calls": args.calls,
                    "jax": jax.__version__,
                    "per_rank": found,
                }
            )
        )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
