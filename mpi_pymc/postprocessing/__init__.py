"""``python -m mpi_pymc postprocess``: ``log_likelihood`` and ``posterior_predictive`` groups of a
finished run, computed by every rank for its own chains and written into the run's file.

Any number of ranks may run the pass (not necessarily the sampling run's): each takes a
contiguous chain group, reads its chains' posterior draws, and evaluates PyMC's own graphs —
the pointwise log-likelihood ``pm.compute_log_likelihood`` builds, and the observed variables'
forward-sampling graph — translated to JAX like the log-density (data as arguments), vectorized
over blocks of draws sized to a memory budget. A block never mixes chains, so every draw is
computed in a program of the same shape whatever the rank count: the groups are bit-identical
on 1, 2 or 4 ranks. Posterior-predictive draw ``d`` of chain ``c`` uses the key
``fold_in(seeding.predictive_key(root_seed, c), d)``.

``jobscript`` builds the CLI on login nodes without NumPy: NumPy and the rest load lazily.

The groups are written by the file's own writer (see ``added_groups.open_group_writer``); a group
is marked complete only after every rank has written, so a killed pass can be repeated.

Modules: ``settings`` (options, validation), ``plan`` (what the pass will do to the file),
``pointwise`` (the JAX program of one draw), ``run`` (the pass).

Layer: imports core, model, output; the driver (a run with ``--log-likelihood``) and the front
doors (``postprocess`` command, ``mpi_pymc.postprocess()``) import it.
"""
