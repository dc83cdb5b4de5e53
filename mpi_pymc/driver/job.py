"""What every phase of one run shares: the job (communicator, settings, clocks, stop flags), this
rank's chains, where sampling left off, and the run's result."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpi_pymc.core.config import RunConfig
from mpi_pymc.driver.signals import StopRequest
from mpi_pymc.output.checkpoint import Checkpoint
from mpi_pymc.sampling.stopping import (
    RESUMABLE_STOPS,
    STOP_DRAWS,
)


@dataclass
class RunResult:
    out: str
    root_seed: int
    chains: int
    draws_completed: np.ndarray
    timings: dict = field(default_factory=dict)
    summary: dict | None = None
    stopped_by: str = STOP_DRAWS

    @property
    def resumable(self) -> bool:
        """Stopped early with a checkpoint (signal or deadline): ``--resume`` continues it."""
        return self.stopped_by in RESUMABLE_STOPS


@dataclass
class Job:
    """What every phase of one run shares: communicator, settings, clocks and the stop flags."""

    comm: Any
    config: RunConfig
    echo: Callable[[str], None]
    launched_at: float = field(default_factory=time.time)
    t_start: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    stop: StopRequest = field(default_factory=StopRequest)
    lock: Any = None  # rank 0's hold on the output (output_lock.OutputLock)
    writer: Any = None  # the open output, once there is one
    # --data-shards across ranks (driver.settings.enter_shard_groups): ``comm`` is then the
    # ranks holding the same shard (one per chain group, as an unsharded run's ranks), ``world``
    # every rank, ``shard_comm`` this rank's shard group and ``shard`` its place in it.
    world: Any = None
    shard_comm: Any = None
    shard: int = 0
    scratch: str | None = None  # where a shard s > 0 writes the output nobody reads

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    @property
    def everyone(self) -> Any:
        """Every rank of the job: ``world`` with data shards across ranks, else ``comm``. A
        failure that must stop the run is agreed over it: a shard's ranks that went on alone
        would wait forever in the log-density's collective."""
        return self.world if self.world is not None else self.comm

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def say(self, line: str) -> None:
        if self.rank == 0:
            self.echo(line)


@dataclass
class Chains:
    """This rank's chains once the model is compiled: what sampling needs."""

    compiled: Any
    chain_group: range
    root_seed: int
    sampler: Any
    state: Any
    ckpt: Checkpoint | None
    compiling: Any = None  # BackgroundCompile


@dataclass
class Sampled:
    """Where the sampling loop left off."""

    draw: int
    iteration: int
    stopped_by: str | None
    draws_completed: np.ndarray
    divergences: int = 0
    goal_stats: dict | None = None  # the last --until-ess check's diagnostics, at `draw`
    goal_checks: list[int] = field(default_factory=list)  # draws checked by this process
