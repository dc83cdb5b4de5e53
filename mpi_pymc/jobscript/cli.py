"""``python -m mpi_pymc jobscript``'s command line: its options, the template they pick, the
validated :class:`~mpi_pymc.jobscript.render.JobRequest` they make, and ``main``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mpi_pymc.core.config import UserError, check_model_file, parse_model_spec
from mpi_pymc.jobscript.render import (
    _JOB_NAME,
    TEMPLATES,
    JobRequest,
    _run_dests,
    _suppress_defaults,
    array_indices_max,
    out_pattern_to_shell,
    parse_walltime,
    render,
    template_path,
)
from mpi_pymc.options import add_run_options

EPILOG = """\
The job script keeps the template's comments, so it explains itself; read it before you submit.
Resources: GPU nodes get one rank per GPU (--gpus-per-node / --gpus-per-rank ranks per node);
--cpu asks for no GPUs and --ranks-per-node ranks with --cpus-per-rank cores each. The template
is picked from the options unless --template names one:
  single_node_gpus  one node, several GPUs (default)
  multi_node_gpus   several nodes (default for --nodes > 1)
  cpu_nodes         CPU-only nodes (default for --cpu)
  walltime_resume   a long run over several allocations: checkpoint at the time limit, requeue,
                    --resume (default for --signal-before)
  array_sweep       an array job over seeds or model variants (default for --array or several
                    models); --out must then contain %a, the array task id
  data_shards       one chain's data split over S GPUs (default for --data-shards S > 1 on
                    GPUs); S must divide the ranks, and a shard group stays on one node when S
                    divides the ranks per node
--out may use sbatch's %x (job name), %j (job id), %A (array job id) and %a (array task id).

examples:
  python -m mpi_pymc jobscript model.py --gpus-per-node 4 --time 02:00:00 \\
      --account proj123 --partition gpu --draws 2000 -o fit.sbatch
  python -m mpi_pymc jobscript model.py --nodes 8 --gpus-per-node 4 --time 12:00:00 \\
      --template walltime_resume --draws 200000 -o long.sbatch
  python -m mpi_pymc jobscript model.py --cpu --nodes 2 --ranks-per-node 16 --cpus-per-rank 4 \\
      --time 01:00:00 --array 0-9 --out sweep-%a.h5 -o sweep.sbatch
  python -m mpi_pymc jobscript big_glm.py --nodes 4 --gpus-per-node 4 --data-shards 4 \\
      --time 04:00:00 -o shards.sbatch
then: sbatch fit.sbatch
"""


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {value}")
        return value

    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``jobscript`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "jobscript",
        help="write a SLURM job script (sbatch) for a run",
        description="Write a SLURM batch script that runs `python -m mpi_pymc run MODEL.py` "
        "with the given resources and run options, from a template in jobs/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL.py[:NAME]",
        help="model file; several only for --template array_sweep (one variant per task)",
    )
    g = parser.add_argument_group("SLURM resources")
    g.add_argument("--time", required=True, help="wall-clock limit, HH:MM:SS or D-HH:MM:SS")
    g.add_argument("--nodes", type=_positive("--nodes"), default=1, help="nodes (1)")
    g.add_argument(
        "--gpus-per-node",
        type=_positive("--gpus-per-node"),
        help="GPUs to use on each node; one rank per GPU (or per --gpus-per-rank GPUs)",
    )
    g.add_argument("--cpu", action="store_true", help="CPU-only nodes: request no GPUs")
    g.add_argument(
        "--ranks-per-node",
        type=_positive("--ranks-per-node"),
        help="MPI ranks per node with --cpu (default: the template's)",
    )
    g.add_argument(
        "--cpus-per-rank",
        type=_positive("--cpus-per-rank"),
        help="CPU cores per rank, --cpus-per-task (default: the template's)",
    )
    g.add_argument("--account", help="project/account to charge (default: your default one)")
    g.add_argument("--partition", help="partition (queue) (default: the site's default)")
    g.add_argument("--job-name", help="job name, also in file names (default: the model's name)")
    g = parser.add_argument_group("job script")
    g.add_argument(
        "--template",
        help=f"one of {', '.join(TEMPLATES)}, or a PATH.sbatch of your own (default: see below)",
    )
    g.add_argument("--array", help="array_sweep: task ids, e.g. 0-9 (default: one per model)")
    g.add_argument(
        "--signal-before",
        type=_positive("--signal-before"),
        help="walltime_resume: seconds before the time limit to checkpoint (template: 600)",
    )
    g.add_argument(
        "--python",
        help="python in the job's environment (default: $MPI_PYMC_PYTHON, else `python`)",
    )
    g.add_argument("-o", "--job-file", help="write the script here (default: print it)")
    g.add_argument("--force", action="store_true", help="replace an existing --job-file")
    add_run_options(parser)
    _suppress_defaults(parser, set(_run_dests()))
    return parser


def _choose_template(args: argparse.Namespace) -> str:
    if args.template:
        return args.template
    if args.array or len(args.models) > 1:
        return "array_sweep"
    if args.signal_before is not None:
        return "walltime_resume"
    if args.cpu:
        return "cpu_nodes"
    if (getattr(args, "data_shards", None) or 1) > 1:
        return "data_shards"
    return "multi_node_gpus" if args.nodes > 1 else "single_node_gpus"


def _check_data_shards(
    run_options: dict, nodes: int, ranks_per_node: int | None, gpus_per_rank: int
) -> None:
    """``--data-shards S`` must fit the job before it queues (the run would refuse it at its
    start, after the wait): the S GPUs of each rank (``--gpus-per-rank S``), or S ranks of one
    device each with S dividing the ranks. (A shard group sits on one node when S divides the
    ranks per node; the data_shards template says why that is faster.)"""
    shards = run_options.get("data_shards")
    if shards is None or shards <= 1:
        return
    if gpus_per_rank > 1:
        if shards != gpus_per_rank:
            raise UserError(
                f"--data-shards {shards} but --gpus-per-rank {gpus_per_rank}: a rank splits "
                f"the data over all its GPUs, so pass --data-shards {gpus_per_rank}, or one GPU "
                "per rank to split it across ranks"
            )
        return
    if ranks_per_node is not None and (nodes * ranks_per_node) % shards:
        total = nodes * ranks_per_node
        raise UserError(
            f"--data-shards {shards} does not divide the {total} ranks ({nodes} node(s) x "
            f"{ranks_per_node}): use a divisor of {total}, best one of the {ranks_per_node} "
            "ranks per node"
        )


def request_from_args(args: argparse.Namespace) -> JobRequest:
    """Validate the ``jobscript`` arguments once, up front; one clear line per mistake."""
    run_options = {d: getattr(args, d) for d in _run_dests() if hasattr(args, d)}
    template = _choose_template(args)
    name = Path(template).stem if template.endswith(".sbatch") else template
    if not template.endswith(".sbatch") and template not in TEMPLATES:
        raise UserError(
            f"unknown --template '{template}': choose one of {', '.join(TEMPLATES)} "
            "or pass a PATH.sbatch"
        )
    time_seconds = parse_walltime(args.time)
    for spec in args.models:
        check_model_file(parse_model_spec(spec)[0])
    cpu = args.cpu or name == "cpu_nodes"
    gpus_per_rank = run_options.get("gpus_per_rank")
    if cpu:
        if args.gpus_per_node:
            raise UserError(
                "--gpus-per-node asks for GPUs but --cpu (or the cpu_nodes template) for none: "
                "drop one"
            )
        if gpus_per_rank:
            raise UserError(f"--cpu but --gpus-per-rank {gpus_per_rank}: drop --gpus-per-rank")
        gpus_per_node, ranks_per_node = 0, args.ranks_per_node
    else:
        if not args.gpus_per_node:
            raise UserError(
                "how many GPUs per node? pass --gpus-per-node G (one rank each), or --cpu for "
                "CPU-only nodes"
            )
        if gpus_per_rank == 0:
            raise UserError("--gpus-per-rank 0 runs on CPU: pass --cpu instead of --gpus-per-node")
        per_rank = gpus_per_rank or 1
        if args.gpus_per_node % per_rank:
            raise UserError(
                f"--gpus-per-node {args.gpus_per_node} is not a multiple of --gpus-per-rank "
                f"{per_rank}: every rank needs the same number of GPUs"
            )
        gpus_per_node, ranks_per_node = args.gpus_per_node, args.gpus_per_node // per_rank
        if args.ranks_per_node and args.ranks_per_node != ranks_per_node:
            raise UserError(
                f"--ranks-per-node {args.ranks_per_node} but {args.gpus_per_node} GPUs per node "
                f"at {per_rank} per rank make {ranks_per_node}: drop --ranks-per-node"
            )
    _check_data_shards(run_options, args.nodes, ranks_per_node, gpus_per_rank or (0 if cpu else 1))
    if name == "single_node_gpus" and args.nodes > 1:
        raise UserError(
            f"single_node_gpus is for one node but --nodes {args.nodes}: "
            "use --template multi_node_gpus (the default for several nodes)"
        )
    if len(args.models) > 1 and name != "array_sweep":
        raise UserError(
            f"{len(args.models)} models given: several models need --template array_sweep "
            "(one per array task)"
        )
    array = args.array
    base_seed = None
    out = run_options.get("out")
    if name == "array_sweep":
        if array is None and len(args.models) > 1:
            array = f"0-{len(args.models) - 1}"
        if array is not None:
            largest = array_indices_max(array)
            if len(args.models) > 1 and largest >= len(args.models):
                raise UserError(
                    f"--array {array} reaches task {largest} but only {len(args.models)} models "
                    f"were given: use --array 0-{len(args.models) - 1}"
                )
        if out is not None and "%a" not in out:
            raise UserError(
                f"--out '{out}' is the same for every array task: put %a (the task id) in it, "
                "e.g. --out fit-%a.h5"
            )
        base_seed = run_options.get("seed")
    elif array is not None:
        raise UserError(f"--array needs --template array_sweep, not {name}")
    if args.signal_before is not None:
        if name != "walltime_resume" and not template.endswith(".sbatch"):
            raise UserError(f"--signal-before needs --template walltime_resume, not {name}")
        if args.signal_before >= time_seconds:
            raise UserError(
                f"--signal-before {args.signal_before} s is not shorter than --time {args.time}: "
                "the warning would come before the job starts"
            )
    if name == "walltime_resume":
        for option in ("overwrite", "resume"):
            if run_options.get(option):
                raise UserError(
                    f"--{option} does not go with walltime_resume: the job script adds --resume "
                    "itself when the output file exists"
                )
    if args.job_name is not None and not _JOB_NAME.match(args.job_name):
        raise UserError(
            f"--job-name '{args.job_name}' may only contain letters, digits and . _ + -"
        )
    job_name = args.job_name
    if job_name is None and len(args.models) == 1:
        job_name = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(parse_model_spec(args.models[0])[0]).stem)
    if out is not None:
        out_pattern_to_shell(out)  # validates the % patterns
    run_options.pop("out", None)
    return JobRequest(
        template=template,
        models=tuple(args.models),
        time=args.time,
        nodes=args.nodes,
        cpu=cpu,
        gpus_per_node=gpus_per_node,
        ranks_per_node=ranks_per_node,
        cpus_per_rank=args.cpus_per_rank,
        job_name=job_name,
        account=args.account,
        partition=args.partition,
        array=array,
        signal_before=args.signal_before,
        python=args.python,
        out=out,
        base_seed=base_seed,
        run_options=run_options,
    )


def main(args: argparse.Namespace) -> int:
    """Render the job script; print it, or write ``--job-file``. Returns the exit code."""
    from mpi_pymc.core.errors import EXIT_OK, EXIT_USER

    try:
        request = request_from_args(args)
        path = template_path(request.template)
        name = path.stem
        text = path.read_text()
        if request.run_options and not re.search(r"^RUN_OPTIONS=\(", text, flags=re.MULTILINE):
            raise UserError(f"template '{path}' has no RUN_OPTIONS=(...) line for the run options")
        script = render(text, request, template_name=name)
        if args.job_file is None:
            sys.stdout.write(script)
            return EXIT_OK
        target = Path(args.job_file)
        if target.exists() and not args.force:
            raise UserError(f"'{target}' already exists: pass --force to replace it")
        if not target.parent.is_dir():
            raise UserError(f"directory '{target.parent}' does not exist: create it first")
        target.write_text(script)
        target.chmod(0o755)
    except UserError as exc:
        print(f"mpi_pymc: error: {exc}", file=sys.stderr)
        return EXIT_USER
    print(
        f"wrote {target} ({name}); submit it from the directory with your model: sbatch {target}",
        file=sys.stderr,
    )
    return EXIT_OK
