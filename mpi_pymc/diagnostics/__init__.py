"""Convergence diagnostics: the pure maths of rank-normalized split R-hat, bulk and tail ESS
and MCSE as Vehtari et al. (2021) and ArviZ define them, with the summary table and warnings
(``maths``), and its collective driver over MPI (``collective``), which never gathers every
draw on one rank.

Layer: imports ``mpi_pymc.core``.
"""
