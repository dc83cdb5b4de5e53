"""The model layer: loading a model file (``loading``), PyMC -> JAX compilation (``compile``)
with the project's graph rewrites (``graph_rewrites``) and added JAX translations
(``jax_ops``), the check of the translation against PyTensor (``translation``), one copy of
the data per node (``node_data``) and the log-density split over data shards (``row_shards``).

Layer: imports ``mpi_pymc.core``; nothing here imports sampling, output, driver or front doors.
"""
