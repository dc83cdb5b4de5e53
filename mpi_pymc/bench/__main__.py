"""``python -m mpi_pymc.bench ...``: the benchmark without the CLI wiring (the same options as
``python -m mpi_pymc bench``)."""

import argparse
import sys

from mpi_pymc.bench.cli import EPILOG, add_arguments, main

_parser = argparse.ArgumentParser(
    prog="python -m mpi_pymc.bench",
    epilog=EPILOG,
    formatter_class=argparse.RawDescriptionHelpFormatter,
)
add_arguments(_parser)
sys.exit(main(_parser.parse_args()))
