"""Entry point for ``python -m mpi_pymc``."""

import sys

from mpi_pymc.cli import main

if __name__ == "__main__":
    sys.exit(main())
