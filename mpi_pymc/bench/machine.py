"""Facts about the machine a benchmark runs on, recorded with its results: CPU, memory, GPUs,
the launcher's version, SLURM job, the environment that matters, ranks per node, and the cores
this process may use."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _command_first_line(cmd: list[str], timeout: float = 20) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def gpu_facts() -> list[dict]:
    """Name, memory and driver of each GPU nvidia-smi lists ([] without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=index,name,memory.total,driver_version"
    try:
        proc = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("index", "name", "memory", "driver"), parts, strict=True)))
    return gpus


def machine_facts(launcher: list[str] | None = None) -> dict:
    from mpi_pymc.core.topology import usable_cores

    cores_available = usable_cores()
    facts = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": cores_available,
        "memory_gib": _memory_gib(),
        "gpus": gpu_facts(),
        "launcher_version": (_command_first_line([launcher[0], "--version"]) if launcher else None),
        "slurm": {
            k: os.environ[k]
            for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NNODES", "SLURM_CLUSTER_NAME")
            if k in os.environ
        },
    }
    # The MPI library is read from the runs' output files: initialising MPI here (a singleton)
    # would leak its environment into the launched jobs.
    facts["mpi_library"] = None
    return facts


def recorded_environment(extra: dict[str, str]) -> dict[str, str]:
    """Environment that changes the model or the machine's behaviour, for the record."""
    names = ("CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "OMP_NUM_THREADS", "JAX_PLATFORMS")
    found = {k: v for k, v in os.environ.items() if k.startswith("MPI_PYMC_") or k in names}
    found.update(extra)
    return dict(sorted(found.items()))


def default_ranks_per_node(gpus_per_rank: int | None) -> tuple[int, str]:
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE")
    if per_node:
        match = re.match(r"\d+", per_node)
        if match:
            return int(match.group()), "SLURM tasks per node"
    gpus = gpu_facts()
    if gpus and gpus_per_rank != 0:
        return max(1, len(gpus) // (gpus_per_rank or 1)), "GPUs on this node / GPUs per rank"
    return os.cpu_count() or 1, "cores on this node (one rank per core)"


def first_cores(count: int) -> list[int]:
    """The first ``count`` cores this process may use (all of them when it has fewer)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return allowed[:count]
