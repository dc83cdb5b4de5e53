"""mpi_pymc: SPMD MPI sampler for PyMC models (NUTS per rank, one shared HDF5 output).

The public surface is ``__all__``; every other module and name is private to the package.
Importing it is cheap: PyMC, JAX and MPI load only when a run starts, and by then ArviZ's
refactor notice is filtered (:func:`mpi_pymc.core.banners.silence_banners`; every rank imports
this package first). A job whose ranks all run on this machine (or a process of its own) tells
Open MPI, before it starts, to skip the network fabrics
(:func:`mpi_pymc.core.mpi_env.prefer_local_transports`).
"""

__version__ = "0.1.0"

from mpi_pymc.api import (  # noqa: E402
    RankFailure,
    RunInterrupted,
    open_result,
    postprocess,
    sample,
    summary,
)
from mpi_pymc.core.banners import silence_banners  # noqa: E402
from mpi_pymc.core.config import UserError  # noqa: E402
from mpi_pymc.core.mpi_env import prefer_local_transports  # noqa: E402
from mpi_pymc.submit import SlurmJob, submit  # noqa: E402

silence_banners()
# Before any module starts MPI (mpi4py starts it when first imported).
prefer_local_transports()

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
    "summary",
]
