"""Sampling: the sampler Protocol (``base``) and the samplers (``nuts``, ``hmc``, ``numpyro``,
``blackjax``) with their registry (``registry``), warmup adaptation (``adaptation``), a rank's
chain group driven as one vectorized program (``chain_group``) and the stopping rules
(``stopping``).

Layer: imports ``mpi_pymc.core`` and ``mpi_pymc.model``; nothing here imports the output, the
driver or the front doors. Importing this package imports nothing heavy: the JAX samplers load
when a module asks for them.
"""
