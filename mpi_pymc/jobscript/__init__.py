"""``python -m mpi_pymc jobscript MODEL.py ...``: a SLURM job script ready for ``sbatch``.

It renders one of the templates in ``mpi_pymc/jobs/`` (package data, so every install has them;
the repository's top-level ``jobs/`` links there) with the user's resources (nodes, GPUs, time,
account, partition) in the ``#SBATCH`` lines and their ``run`` options in the script's settings,
so nobody edits ``#SBATCH`` lines by hand for the common cases. ``render`` is the pure text
substitution, ``cli`` the command line; this package's names are both of theirs.

Layer: a tool apart from the run path: imports ``mpi_pymc.core`` and ``mpi_pymc.options`` only,
and runs on login nodes with only the wheel installed (no NumPy, no JAX).
"""

from mpi_pymc.jobscript.cli import EPILOG, add_parser, main, request_from_args
from mpi_pymc.jobscript.render import (
    TEMPLATES,
    JobRequest,
    UserError,
    array_indices_max,
    merge_run_options,
    out_pattern_to_shell,
    parse_run_options,
    parse_walltime,
    render,
    run_option_words,
    template_path,
    templates_dir,
)

__all__ = [
    "EPILOG",
    "TEMPLATES",
    "JobRequest",
    "UserError",
    "add_parser",
    "array_indices_max",
    "main",
    "merge_run_options",
    "out_pattern_to_shell",
    "parse_run_options",
    "parse_walltime",
    "render",
    "request_from_args",
    "run_option_words",
    "template_path",
    "templates_dir",
]
