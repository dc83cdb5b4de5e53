"""mpi_pymc: SPMD MPI sampler for PyMC models (NUTS per rank, one shared HDF5 output)."""

__version__ = "0.1.0"
