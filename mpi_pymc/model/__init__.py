"""The model layer: loading a model file (``loading``), PyMC -> JAX compilation (``compile``)
with the project's graph rewrites (``graph_rewrites``) and added JAX translations
(``jax_ops``), the check of the translation against PyTensor (``translation``) and one copy of
the data per node (``node_data``).

Layer: imports ``mpi_pymc.core``; nothing here imports sampling, output, driver or front doors.
"""
