"""mpi_pymc: SPMD MPI sampler for PyMC models (NUTS per rank, one shared HDF5 output).

The public surface is ``__all__``; every other module and name is private to the package.
Importing it is cheap: PyMC, JAX and MPI load only when a run starts.
"""

__version__ = "0.1.0"

from mpi_pymc.api import (  # noqa: E402
    RankFailure,
    RunInterrupted,
    open_result,
    postprocess,
    sample,
)
from mpi_pymc.config import UserError  # noqa: E402
from mpi_pymc.submit import SlurmJob, submit  # noqa: E402

__all__ = [
    "RankFailure",
    "RunInterrupted",
    "SlurmJob",
    "UserError",
    "__version__",
    "open_result",
    "postprocess",
    "sample",
    "submit",
]
