"""Rendering a job script: a template's ``#SBATCH`` lines and run settings replaced by a
validated request's (pure text substitution on the lines the templates keep stable).

The templates are ``mpi_pymc/jobs/`` (package data, so every install has them; the
repository's top-level ``jobs/`` links there); everything in a template but the lines it keeps
stable (``#SBATCH --opt=value``, ``MODEL=``, ``OUT=``, ``RUN_OPTIONS=(...)``...) is left as it
is."""

from __future__ import annotations

import argparse
import os
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mpi_pymc import __version__
from mpi_pymc.core.config import UserError
from mpi_pymc.options import add_run_options

TEMPLATES = (
    "single_node_gpus",
    "multi_node_gpus",
    "cpu_nodes",
    "walltime_resume",
    "array_sweep",
    "data_shards",
)


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
