"""The base layer every other package stands on: run settings and their validation
(``config``), exit codes and agreed failures across ranks (``errors``), seeds by chain
(``seeding``), ranks, devices and cores (``topology``) and SLURM queries (``slurm``).

Layer: imports only the standard library, NumPy and (inside functions) mpi4py and JAX; nothing
in ``mpi_pymc`` outside this package.
"""
