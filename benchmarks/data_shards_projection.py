"""A projection on paper, not a measurement: how one chain's leapfrog would scale over S data
shards (issue #35), from a gradient's cost G on one device and one collective's cost C.

Model: a leapfrog over S shards costs G / S (each shard's rows) plus the sum across the shard
group, C * ceil(log2 S) for a latency-bound allreduce of a few values (a tree: NCCL's choice
for small messages, and gloo's and MPI's too); S = 1 has no collective. It leaves out what the
measurements show it misses: memory bandwidth shared by the devices of one host (on this 2-core
VM two shards of a 2,000,000-row gradient ran 1.29x faster, not the 1.85x the model gives),
per-leapfrog fixed costs that do not shrink with S, and the rows a shard must hold to keep a
GPU busy.

    python benchmarks/data_shards_projection.py --gradient-ms 94.7 --collective-ms 3.8

prints the speedup and parallel efficiency for S = 1, 2, 4, ..., 64.
"""

from __future__ import annotations

import argparse
import math


def leapfrog_ms(shards: int, gradient_ms: float, collective_ms: float) -> float:
    """Projected milliseconds per leapfrog on ``shards`` devices."""
    steps = math.ceil(math.log2(shards)) if shards > 1 else 0
    return gradient_ms / shards + collective_ms * steps


def table(gradient_ms: float, collective_ms: float, largest: int = 64) -> list[str]:
    lines = [
        f"G = {gradient_ms:g} ms per gradient on one device, C = {collective_ms:g} ms per "
        "allreduce step",
        f"{'S':>3s} {'ms/leapfrog':>12s} {'speedup':>8s} {'efficiency':>11s}",
    ]
    shards = 1
    while shards <= largest:
        t = leapfrog_ms(shards, gradient_ms, collective_ms)
        speedup = gradient_ms / t
        lines.append(f"{shards:3d} {t:12.2f} {speedup:8.2f} {speedup / shards:10.0%}")
        shards *= 2
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradient-ms", type=float, required=True)
    parser.add_argument("--collective-ms", type=float, required=True)
    parser.add_argument("--largest", type=int, default=64)
    args = parser.parse_args(argv)
    print("\n".join(table(args.gradient_ms, args.collective_ms, args.largest)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
