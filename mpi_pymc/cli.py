"""Command line: ``python -m mpi_pymc run MODEL.py[:NAME] [options]``.

Launch it under ``mpirun -n N`` or ``srun`` to sample on N ranks; without a launcher it runs as
a single rank.
"""

from __future__ import annotations

import argparse
import sys

from mpi_pymc import __version__, jobscript
from mpi_pymc.core.config import (
    RunConfig,
    UserError,
    parse_duration,
    parse_model_spec,
)
from mpi_pymc.core.errors import EXIT_CHECKPOINTED, EXIT_OK, EXIT_USER, AgreedError, exit_code_of
from mpi_pymc.options import add_run_options
from mpi_pymc.output import packing

DESCRIPTION = """\
Sample a PyMC model with NUTS on every MPI rank and write all chains into one HDF5 file that
arviz.from_netcdf opens. Each rank runs its own contiguous group of chains; ranks only talk for
progress and diagnostics.

examples:
  python -m mpi_pymc run model.py                    # one rank, 4 chains
  mpirun -n 8 python -m mpi_pymc run model.py --chains 32 --draws 2000 --out fit.h5
  srun python -m mpi_pymc run model.py:hierarchical --chains-per-rank 64 --precision float32
"""

RUN_EPILOG = """\
model file: MODEL.py must define `model = pm.Model(...)` (module level) or `build_model()`
returning one; MODEL.py:NAME picks another attribute. Every rank imports the file, so random
data inside it must be seeded.

exit codes: 0 done, 1 failure on some rank (job aborted), 2 bad input (one line says what),
3 stopped by SIGTERM/SIGUSR1, --max-time or the SLURM job's end time, after a checkpoint
(continue with --resume).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mpi_pymc",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mpi_pymc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="sample a PyMC model on every rank",
        description="Sample MODEL.py's PyMC model with NUTS on every MPI rank.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("model", metavar="MODEL.py[:NAME]", help="model file (and attribute)")
    add_run_options(run)

    summary = commands.add_parser(
        "summary", help="print R-hat/ESS of a finished or partial output file"
    )
    summary.add_argument("path", metavar="OUT.h5")

    from mpi_pymc import bench
    from mpi_pymc.postprocessing.settings import add_parser as add_postprocess_parser

    add_postprocess_parser(commands)
    bench.add_parser(commands)
    jobscript.add_parser(commands)
    packing.add_parser(commands)
    return parser


def config_from_args(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    path, name = parse_model_spec(args.model)
    return RunConfig(
        model_path=path,
        model_name=name,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        chains_per_rank=args.chains_per_rank,
        seed=args.seed,
        out=args.out,
        sampler=args.sampler,
        chain_method=args.chain_method,
        target_accept=args.target_accept,
        max_tree_depth=args.max_tree_depth,
        metric=args.metric,
        adapt_group=args.adapt_group,
        data_shards=args.data_shards,
        data_row_dim=args.data_row_dim,
        precision=args.precision,
        gpus_per_rank=args.gpus_per_rank,
        chunk_draws=args.chunk_draws,
        progress=args.progress,
        io=args.io,
        pack=args.pack,
        overwrite=args.overwrite,
        resume=args.resume,
        until_ess=args.until_ess,
        until_tail_ess=args.until_tail_ess,
        until_rhat=args.until_rhat,
        max_time=None if args.max_time is None else parse_duration(args.max_time),
        check_logp=args.check_logp,
        log_likelihood=args.log_likelihood,
        posterior_predictive=args.posterior_predictive,
        summary=args.summary,
        model_label=args.model_label,
        command_line=["python", "-m", "mpi_pymc", *argv],
    )


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER
    if args.command == "jobscript":  # renders a file on a login node: no MPI needed
        return jobscript.main(args)
    if args.command == "pack":  # one process on the output's file system: no MPI
        return packing.pack_main(args)
    if args.command == "bench":
        # The benchmark driver launches mpirun/srun jobs; it must not start MPI itself.
        from mpi_pymc import bench

        return bench.main(args)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Clone()
    return exit_code_of(comm, lambda: _command(args, argv, comm))


def _command(args: argparse.Namespace, argv: list[str], comm) -> int:
    """``run``, ``postprocess`` or ``summary`` on this rank; failures are left to
    :func:`exit_code_of`."""
    if args.command == "run":
        from mpi_pymc.driver import ignore_stop_signals, run

        try:
            config = config_from_args(args, argv)
        except UserError as exc:  # parsed alike on every rank
            raise AgreedError(str(exc)) from None
        result = run(config, comm)
        ignore_stop_signals()  # this process only exits now: a late walltime signal is moot
        return EXIT_CHECKPOINTED if result.resumable else EXIT_OK
    if args.command == "postprocess":
        from mpi_pymc.postprocessing.run import postprocess
        from mpi_pymc.postprocessing.settings import config_from_args as pass_config_from_args

        try:
            pass_config = pass_config_from_args(args)
        except UserError as exc:  # parsed alike on every rank
            raise AgreedError(str(exc)) from None
        postprocess(pass_config, comm)
        return EXIT_OK
    if args.command == "summary" and comm.Get_rank() == 0:
        from mpi_pymc.report import print_summary

        try:
            print_summary(args.path)
        except UserError as exc:
            raise AgreedError(str(exc)) from None
    return EXIT_OK
