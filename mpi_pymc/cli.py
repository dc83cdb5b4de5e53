"""Command line: ``python -m mpi_pymc run MODEL.py[:NAME] [options]``.

Launch it under ``mpirun -n N`` or ``srun`` to sample on N ranks; without a launcher it runs as
a single rank.
"""

from __future__ import annotations

import argparse
import sys

from mpi_pymc import __version__, jobscript
from mpi_pymc.config import (
    DEFAULT_UNTIL_RHAT,
    RunConfig,
    UserError,
    parse_duration,
    parse_model_spec,
)
from mpi_pymc.errors import EXIT_CHECKPOINTED, EXIT_FAILURE, EXIT_OK, EXIT_USER, AgreedError

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


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


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

    bench.add_parser(commands)
    jobscript.add_parser(commands)
    return parser


def add_run_options(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("chains and draws")
    g.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain (1000)")
    g.add_argument("--tune", type=_positive_int, default=1000, help="warmup steps per chain (1000)")
    chains = g.add_mutually_exclusive_group()
    chains.add_argument(
        "--chains",
        type=_positive_int,
        help="total chains, split over ranks (default max(4, ranks))",
    )
    chains.add_argument("--chains-per-rank", type=_positive_int, help="chains on each rank")
    g.add_argument("--seed", type=_positive_int, help="root seed (default: drawn and printed)")
    g = run.add_argument_group("stopping (--draws is the cap)")
    g.add_argument(
        "--until-ess",
        type=_positive_int,
        metavar="N",
        help="stop after the first chunk where min bulk and tail ESS reach N and max R-hat is "
        "at most --until-rhat; the file then holds exactly the draws taken",
    )
    g.add_argument(
        "--until-rhat",
        type=float,
        default=DEFAULT_UNTIL_RHAT,
        help=f"R-hat bound of --until-ess ({DEFAULT_UNTIL_RHAT})",
    )
    g.add_argument(
        "--max-time",
        metavar="DURATION",
        help="stop with a checkpoint before this much wall time has passed (seconds, MM:SS, "
        "HH:MM:SS or D-HH:MM:SS); inside a SLURM job its end time also applies, 30 s early. "
        "Continue with --resume",
    )
    g = run.add_argument_group("sampler")
    g.add_argument(
        "--sampler",
        default="nuts",
        help="nuts (the project's NUTS, default: Stan's algorithm and warmup, one loop of "
        "leapfrogs per transition), numpyro (numpyro's NUTS), blackjax (blackjax's NUTS) or hmc "
        "(adaptive jittered HMC: fixed-length trajectories learned in warmup; lockstep-friendly "
        "for many chains per GPU)",
    )
    g.add_argument(
        "--chain-method",
        default="auto",
        help="auto (default: sequential on a CPU rank, where vectorized NUTS chains wait for the "
        "deepest tree; vectorized on a GPU, and with --adapt-group), vectorized (vmap a rank's "
        "chains) or sequential (one after another)",
    )
    g.add_argument(
        "--target-accept",
        type=float,
        default=0.8,
        help="target acceptance of step-size adaptation (0.8)",
    )
    g.add_argument(
        "--max-tree-depth",
        type=_positive_int,
        default=10,
        help="NUTS max depth (10); hmc: at most 2**depth steps",
    )
    g.add_argument(
        "--adapt-group",
        type=_positive_int,
        default=1,
        help="hmc: chains that pool their warmup adaptation, so they share step size, mass "
        "matrix and trajectory length and step in lockstep (1: each chain adapts alone); must "
        "divide every rank's chains",
    )
    g.add_argument("--precision", default="float64", help="float64 (default) or float32")
    g = run.add_argument_group("devices and output")
    g.add_argument(
        "--gpus-per-rank",
        type=_positive_int,
        help="GPUs each rank binds (default 1 when GPUs are visible, else CPU; 0 forces CPU)",
    )
    g.add_argument("--out", help="output HDF5 file (default MODEL.h5)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run checkpointed in OUT.ckpt (same model and options; any rank count)",
    )
    g.add_argument(
        "--chunk-draws",
        type=_positive_int,
        default=100,
        help="draws per chunk: written to disk and reported after each (100)",
    )
    g.add_argument("--io", default="auto", help="auto (default), mpio (parallel HDF5) or shards")
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on rank 0 (default: on when stderr is a terminal)",
    )


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
        adapt_group=args.adapt_group,
        precision=args.precision,
        gpus_per_rank=args.gpus_per_rank,
        chunk_draws=args.chunk_draws,
        progress=args.progress,
        io=args.io,
        overwrite=args.overwrite,
        resume=args.resume,
        until_ess=args.until_ess,
        until_rhat=args.until_rhat,
        max_time=None if args.max_time is None else parse_duration(args.max_time),
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
    if args.command == "bench":
        # The benchmark driver launches mpirun/srun jobs; it must not start MPI itself.
        from mpi_pymc import bench

        return bench.main(args)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Clone()
    try:
        if args.command == "run":
            from mpi_pymc.run import run

            try:
                config = config_from_args(args, argv)
            except UserError as exc:  # parsed alike on every rank
                raise AgreedError(str(exc)) from None
            result = run(config, comm)
            if result.resumable:
                return EXIT_CHECKPOINTED
        elif args.command == "summary":
            from mpi_pymc.report import print_summary

            if comm.Get_rank() == 0:
                try:
                    print_summary(args.path)
                except UserError as exc:
                    raise AgreedError(str(exc)) from None
        return EXIT_OK
    except AgreedError as exc:
        if comm.Get_rank() == 0:
            print(f"mpi_pymc: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER
    except UserError as exc:
        # Known to this rank only: the others may be waiting in a collective.
        from mpi_pymc.errors import abort

        abort(comm, exc)
        return EXIT_USER
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        from mpi_pymc.errors import abort

        abort(comm, exc)
        return EXIT_FAILURE
