"""``python -m mpi_pymc jobscript MODEL.py ...``: a SLURM job script ready for ``sbatch``.

It renders one of the templates in ``mpi_pymc/jobs/`` (package data, so every install has them;
the repository's top-level ``jobs/`` links there) with the user's resources (nodes, GPUs, time,
account, partition) in the ``#SBATCH`` lines and their ``run`` options in the script's settings,
so nobody edits ``#SBATCH`` lines by hand for the common cases. The rendering is pure text
substitution on lines the templates keep stable (``#SBATCH --opt=value``, ``MODEL=``, ``OUT=``,
``RUN_OPTIONS=(...)``...); everything else in a template is left as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mpi_pymc import __version__
from mpi_pymc.core.config import UserError, check_model_file, parse_model_spec
from mpi_pymc.options import add_run_options

TEMPLATES = ("single_node_gpus", "multi_node_gpus", "cpu_nodes", "walltime_resume", "array_sweep")
_SBATCH = re.compile(r"^#SBATCH\s+--(?P<name>[A-Za-z-]+)(?:=(?P<value>\S*))?\s*$")
_WALLTIME = re.compile(
    r"^(?:(?P<days>\d+)-)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2})$"
)
_ARRAY = re.compile(r"^\d+(?:-\d+(?::\d+)?)?(?:,\d+(?:-\d+(?::\d+)?)?)*(?:%\d+)?$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
# sbatch filename patterns that make sense in an output path, and the variables they become.
_OUT_PATTERNS = {
    "x": "${SLURM_JOB_NAME}",
    "j": "${SLURM_JOB_ID}",
    "A": "${SLURM_ARRAY_JOB_ID}",
    "a": "${SLURM_ARRAY_TASK_ID}",
}

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
--out may use sbatch's %x (job name), %j (job id), %A (array job id) and %a (array task id).

examples:
  python -m mpi_pymc jobscript model.py --gpus-per-node 4 --time 02:00:00 \\
      --account proj123 --partition gpu --draws 2000 -o fit.sbatch
  python -m mpi_pymc jobscript model.py --nodes 8 --gpus-per-node 4 --time 12:00:00 \\
      --template walltime_resume --draws 200000 -o long.sbatch
  python -m mpi_pymc jobscript model.py --cpu --nodes 2 --ranks-per-node 16 --cpus-per-rank 4 \\
      --time 01:00:00 --array 0-9 --out sweep-%a.h5 -o sweep.sbatch
then: sbatch fit.sbatch
"""


@dataclass(frozen=True)
class JobRequest:
    """Everything the job script needs, validated; rendering it cannot fail."""

    template: str  # a name from TEMPLATES or the path of a custom .sbatch file
    models: tuple[str, ...]
    time: str
    nodes: int
    cpu: bool
    gpus_per_node: int  # 0 on CPU
    ranks_per_node: int | None  # None: the template's value
    cpus_per_rank: int | None  # None: the template's value
    job_name: str | None = None
    account: str | None = None
    partition: str | None = None
    array: str | None = None
    signal_before: int | None = None
    python: str | None = None
    out: str | None = None
    base_seed: int | None = None
    run_options: dict = field(default_factory=dict)  # dest -> value, only the ones given


def parse_walltime(text: str) -> int:
    """Seconds in an sbatch ``--time`` of the form HH:MM:SS or D-HH:MM:SS."""
    match = _WALLTIME.match(text.strip())
    if match is None:
        raise UserError(
            f"--time '{text}' is not HH:MM:SS or D-HH:MM:SS: write e.g. --time 02:00:00"
        )
    days, hours, minutes, seconds = (
        int(match[k] or 0) for k in ("days", "hours", "minutes", "seconds")
    )
    if minutes >= 60 or seconds >= 60 or (days and hours >= 24):
        raise UserError(f"--time '{text}' has minutes or seconds over 59 (or hours over 23)")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UserError(f"--time '{text}' is zero: give the wall-clock limit, e.g. 02:00:00")
    return total


def array_indices_max(spec: str) -> int:
    """The largest task id in an sbatch ``--array`` spec such as ``0-9:2,15%4``."""
    if not _ARRAY.match(spec):
        raise UserError(
            f"--array '{spec}' is not an sbatch array spec: write e.g. 0-9, 1,3,5 or 0-99%10"
        )
    largest = 0
    for part in spec.split("%")[0].split(","):
        bounds = part.split(":")[0].split("-")
        largest = max(largest, int(bounds[-1]))
    return largest


def out_pattern_to_shell(path: str) -> str:
    """``fit-%j.h5`` -> ``fit-${SLURM_JOB_ID}.h5``, safe inside bash double quotes."""
    pieces, i = [], 0
    while i < len(path):
        char = path[i]
        if char == "%":
            code = path[i + 1 : i + 2]
            if code == "%":
                pieces.append("%")
            elif code in _OUT_PATTERNS:
                pieces.append(_OUT_PATTERNS[code])
            else:
                raise UserError(
                    f"--out '{path}': unknown pattern '%{code}'; use %x, %j, %A, %a (or %% for %)"
                )
            i += 2
            continue
        pieces.append(_double_quoted(char))
        i += 1
    return "".join(pieces)


def _double_quoted(text: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", text)


def templates_dir() -> Path:
    """``$MPI_PYMC_JOBS_DIR``, else the templates installed with the package (``mpi_pymc/jobs``).

    They are package data, so any install (a wheel, ``pip install .``, ``pip install -e .``) has
    them; the repository's top-level ``jobs`` is a link to the same folder.
    """
    override = os.environ.get("MPI_PYMC_JOBS_DIR")
    if override:
        return Path(override)
    return Path(str(resources.files("mpi_pymc") / "jobs"))


def template_path(template: str) -> Path:
    if template.endswith(".sbatch"):
        path = Path(template)
        if not path.is_file():
            raise UserError(f"--template '{template}' does not exist: check the path")
        return path
    path = templates_dir() / f"{template}.sbatch"
    if not path.is_file():
        raise UserError(
            f"job template '{path}' not found: point MPI_PYMC_JOBS_DIR at a folder of templates "
            "(or unset it to use the installed ones) or pass --template PATH.sbatch"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Run options: the ones the user gave, back to command-line words


def _run_option_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_run_options(parser)
    _suppress_defaults(parser, {a.dest for a in parser._actions if a.option_strings})
    return parser


def _suppress_defaults(parser: argparse.ArgumentParser, dests: set[str]) -> None:
    """Leave these options out of the namespace unless given, so 'given' is detectable."""
    for action in parser._actions:
        if action.dest in dests:
            action.default = argparse.SUPPRESS


def _run_dests() -> list[str]:
    return [a.dest for a in _run_option_parser()._actions if a.option_strings]


def parse_run_options(words: list[str]) -> dict:
    """``['--draws', '50']`` -> ``{'draws': 50}`` (only the options present)."""
    try:
        namespace, extra = _run_option_parser().parse_known_args(words)
    except SystemExit:
        raise UserError(f"cannot read run options {' '.join(words)!r}") from None
    if extra:
        raise UserError(f"not a run option: {' '.join(extra)}")
    return vars(namespace)


def run_option_words(options: dict) -> list[str]:
    """Command-line words for ``options`` (dest -> value), in ``run --help`` order."""
    words: list[str] = []
    for action in _run_option_parser()._actions:
        if not action.option_strings or action.dest not in options:
            continue
        value = options[action.dest]
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            if value:
                words.append(flag)
        else:
            words += [flag, str(value)]
    return words


def merge_run_options(template_options: dict, user_options: dict) -> dict:
    """The template's defaults overridden by the user's; --chains replaces --chains-per-rank."""
    merged = dict(template_options)
    if "chains" in user_options or "chains_per_rank" in user_options:
        merged.pop("chains", None)
        merged.pop("chains_per_rank", None)
    merged.update(user_options)
    return merged


# ---------------------------------------------------------------------------------------------
# Rendering: pure text in, text out


def _template_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        match = _SBATCH.match(line)
        if match:
            values[match["name"]] = match["value"] or ""
    return values


def _template_run_options(text: str) -> dict:
    match = re.search(r"^RUN_OPTIONS=\((.*)\)\s*$", text, flags=re.MULTILINE)
    return parse_run_options(shlex.split(match[1])) if match else {}


def _resources_comment(request: JobRequest, ranks_per_node: int, cpus: int) -> list[str]:
    total = request.nodes * ranks_per_node
    head = (
        f"# Resources: {request.nodes} node(s) x {ranks_per_node} rank(s) per node = {total} "
        f"rank(s), {cpus} CPU core(s) per rank"
    )
    if request.cpu:
        return [
            f"{head}, no GPUs.",
            '# Ranks x cores per rank should match the cores of one node (`sinfo -o "%P %c"`).',
        ]
    per_rank = request.gpus_per_node // ranks_per_node
    return [
        f"{head},",
        f"# {request.gpus_per_node} GPU(s) per node: {per_rank} per rank (mpi_pymc gives each "
        "node-local rank its own).",
    ]


def render(text: str, request: JobRequest, template_name: str = "") -> str:
    """The job script: ``text`` (a template) with ``request`` filled in."""
    defaults = _template_values(text)
    ranks_per_node = request.ranks_per_node or int(defaults.get("ntasks-per-node") or 1)
    cpus = request.cpus_per_rank or int(defaults.get("cpus-per-task") or 1)
    sbatch: dict[str, str | None] = {
        "job-name": request.job_name,
        "account": request.account,
        "partition": request.partition,
        "time": request.time,
        "nodes": str(request.nodes),
        "ntasks-per-node": str(ranks_per_node),
        "cpus-per-task": str(cpus),
        "gpus-per-node": None if request.cpu else str(request.gpus_per_node),
        "gpus-per-task": None if request.cpu else str(request.gpus_per_node // ranks_per_node),
        "array": request.array,
        "signal": None if request.signal_before is None else f"B:USR1@{request.signal_before}",
    }
    run_options = merge_run_options(_template_run_options(text), request.run_options)
    if request.cpu:
        run_options["gpus_per_rank"] = 0
    for key in ("out", "seed") if template_name == "array_sweep" else ("out",):
        run_options.pop(key, None)

    lines = text.splitlines()
    rendered: list[str] = []
    seen: set[str] = set()
    in_resources_comment = False
    for index, line in enumerate(lines):
        if index == 1:
            rendered += [
                f"# Written by `python -m mpi_pymc jobscript` (mpi_pymc {__version__}) from "
                f"{template_name or 'a template'}.sbatch;",
                "# submit it with `sbatch THIS_FILE`. `##SBATCH` lines are switched off.",
            ]
        if line.startswith("# Resources"):
            in_resources_comment = True
            rendered += _resources_comment(request, ranks_per_node, cpus)
            continue
        if in_resources_comment and line.startswith("#") and not line.startswith("#SBATCH"):
            continue
        in_resources_comment = False
        match = _SBATCH.match(line)
        if match and match["name"] in sbatch:
            name = match["name"]
            seen.add(name)
            value = sbatch[name]
            if value is not None:
                rendered.append(f"#SBATCH --{name}={value}")
            elif name in ("gpus-per-node", "gpus-per-task"):
                continue  # CPU only: ask for no GPUs
            elif name in ("account", "partition"):
                rendered.append(f"#{line}")  # not given: the site's default applies
            else:
                rendered.append(line)
            continue
        rendered.append(_render_setting(line, request, run_options))
    missing = [
        f"#SBATCH --{name}={value}"
        for name, value in sbatch.items()
        if value is not None and name not in seen and name not in ("gpus-per-task", "gpus-per-node")
    ]
    if not request.cpu and not ({"gpus-per-node", "gpus-per-task"} & seen):
        missing.append(f"#SBATCH --gpus-per-node={request.gpus_per_node}")
    if missing:
        sbatch_lines = [
            i for i, ln in enumerate(rendered) if ln.startswith(("#SBATCH", "##SBATCH"))
        ]
        last = max(sbatch_lines, default=0)
        rendered[last + 1 : last + 1] = missing
    return "\n".join(rendered) + "\n"


def _render_setting(line: str, request: JobRequest, run_options: dict) -> str:
    if line.startswith("PYTHON=") and request.python:
        return f'PYTHON="{_double_quoted(request.python)}"'
    if line.startswith("MODEL="):
        return f'MODEL="{_double_quoted(request.models[0])}"'
    if line.startswith("MODELS=("):
        return f"MODELS=({' '.join(shlex.quote(m) for m in request.models)})"
    if line.startswith("BASE_SEED=") and request.base_seed is not None:
        return f"BASE_SEED={request.base_seed}"
    if line.startswith("OUT=") and request.out:
        return f'OUT="{out_pattern_to_shell(request.out)}"'
    if line.startswith("RUN_OPTIONS=("):
        words = run_option_words(run_options)
        return f"RUN_OPTIONS=({' '.join(shlex.quote(w) for w in words)})"
    return line


# ---------------------------------------------------------------------------------------------
# Command line


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
    return "multi_node_gpus" if args.nodes > 1 else "single_node_gpus"


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
