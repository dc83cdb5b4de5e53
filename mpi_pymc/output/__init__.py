"""The output: the HDF5 file and how ranks write it (``storage``: layout, parallel-HDF5 and
shards writers, groups added after a run), checkpoints (``checkpoint``), the lock a running job
holds on its output (``lock``) and the free-space check (``disk_space``).

Layer: imports ``mpi_pymc.core``; it knows a compiled model only by its attributes, so nothing
here imports the model, sampling, driver or front doors.
"""
