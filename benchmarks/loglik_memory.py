"""Peak memory per rank and wall time of the log-likelihood group at scale: mpi_pymc vs PyMC.

    python benchmarks/loglik_memory.py                   # N=50,000 and 500,000 rows, D=20
    python benchmarks/loglik_memory.py --sizes 50000 --compare-draws 1000 --full-draws 0
    python benchmarks/loglik_memory.py --reuse-samples   # keep sample files already in --workdir

For every N (``MPI_PYMC_N``; ``MPI_PYMC_D`` columns) of ``examples/logistic_regression.py``:

1. sample a file with ``python -m mpi_pymc run`` (``--chains`` chains, ``--tune`` warmup,
   hmc, 2 ranks). At the largest N it holds ``--full-draws`` draws per chain when the disk has
   room for the full group, otherwise ``--compare-draws``;
2. PyMC: ``pm.compute_log_likelihood(idata, model=model)`` in a plain python process on the
   file's posterior (every K-th draw, so that it is ``--compare-draws`` draws per chain);
3. mpi_pymc: ``python -m mpi_pymc postprocess MODEL OUT.h5 --log-likelihood [--thin K]`` on
   every rank count of ``--ranks`` (``mpirun -n R``), on the same draws;
4. at the largest N, if the disk allows, mpi_pymc alone on every draw of the file
   (``--full-draws`` per chain, ranks ``--full-ranks``): a group PyMC could not hold in memory.

Every measured process (each MPI rank, the PyMC process) runs under this script's own
``--child-measure`` wrapper, which waits for it with ``os.wait4`` and records that one
process's peak RSS and wall time: per rank, never the ``mpirun`` launcher. Compute time is the
time mpi_pymc's pass prints (``wrote ... in Xs``: loading the model, compiling, computing and
writing; without interpreter start and imports) and, for PyMC, the
``compute_log_likelihood`` call alone. The group's size is its logical size (values x 8
bytes), plus for mpi_pymc the bytes of its shard files on disk.

Prints a markdown table and writes ``results.json`` and ``results.md`` into ``--results``.
Sample files go to ``--workdir`` and are deleted at the end unless ``--keep-files``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "examples/logistic_regression.py"
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# Free space kept beyond a pass's group (and the copy of the main file the shards writer makes).
DISK_MARGIN = 4 << 30


# --- the per-process wrapper and the PyMC worker (run in child processes) ---------------------


def child_measure(record: str, command: list[str]) -> int:
    """Run ``command``, wait for it with ``wait4`` and write its peak RSS and wall time to
    ``record`` (``{rank}`` is replaced by the MPI rank). Returns the command's exit code."""
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    Path(record.format(rank=rank)).write_text(
        json.dumps(
            {"rank": rank, "wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": code}
        )
    )
    return code


def pymc_worker(path: str, thin: int, record: str) -> None:
    """PyMC's own path: build the model, load the file's posterior (every ``thin``-th draw),
    ``pm.compute_log_likelihood`` it, and write the timings and the group's size to ``record``.

    Only the posterior is loaded (lazily opened, then the kept draws read), so that a
    ``log_likelihood`` group already in the file is not read into memory.
    """
    import arviz as az
    import pymc as pm

    sys.path.insert(0, str(ROOT))
    from mpi_pymc.model.loading import load_model

    t0 = time.perf_counter()
    model = load_model(str(ROOT / MODEL))
    lazy = az.from_netcdf(path)
    posterior = lazy.posterior.isel(draw=slice(None, None, thin)).load()
    idata = az.InferenceData(posterior=posterior)
    t1 = time.perf_counter()
    pm.compute_log_likelihood(idata, model=model, progressbar=False)
    t2 = time.perf_counter()
    group = idata.log_likelihood
    values = sum(int(var.size) for var in group.data_vars.values())
    Path(record).write_text(
        json.dumps(
            {
                "load_s": t1 - t0,
                "compute_s": t2 - t1,
                "chains": int(group.sizes["chain"]),
                "draws": int(group.sizes["draw"]),
                "values": values,
                "group_bytes": sum(int(var.nbytes) for var in group.data_vars.values()),
            }
        )
    )


# --- the orchestrator -------------------------------------------------------------------------


def env_for(n: int, d: int) -> dict[str, str]:
    """The environment of every process of size ``n`` x ``d``: model size and MPI as root."""
    return {**os.environ, **MPI_ENV, "MPI_PYMC_N": str(n), "MPI_PYMC_D": str(d)}


def python() -> str:
    """The interpreter running this script (the project's venv)."""
    return sys.executable


def mpirun() -> str:
    """``mpirun`` next to the interpreter (pip-installed Open MPI), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else "mpirun"


def free_bytes(directory: Path) -> int:
    """Free bytes on the file system of ``directory``."""
    return shutil.disk_usage(directory).free


def remove_sample(path: Path) -> None:
    """Delete a sample file and everything mpi_pymc keeps beside it (``OUT.parts/`` ...)."""
    for item in path.parent.glob(path.name + "*"):
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()


def sample(path: Path, n: int, args, draws: int) -> dict:
    """``mpi_pymc run`` into ``path`` (reused when ``--reuse-samples`` and it has ``draws``)."""
    import h5py

    command = [
        mpirun(), "-n", str(args.sample_ranks), python(), "-m", "mpi_pymc", "run", MODEL,
        "--chains", str(args.chains), "--tune", str(args.tune), "--draws", str(draws),
        "--sampler", "hmc", "--seed", "1", "--out", str(path), "--no-progress",
    ]  # fmt: skip
    if args.reuse_samples and path.exists():
        with h5py.File(path, "r") as f:
            have = int(f["posterior"]["draw"].shape[0]), int(f.attrs["chains"])
        if have == (draws, args.chains):
            print(f"reusing {path} ({args.chains} chains x {draws} draws)", flush=True)
            return {"command": shell_line(command, n, args.d), "reused": True, "wall_s": None}
    remove_sample(path)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env_for(n, args.d), check=True, capture_output=True)
    wall = time.perf_counter() - start
    print(f"sampled {path} in {wall:.0f}s", flush=True)
    return {"command": shell_line(command, n, args.d), "reused": False, "wall_s": wall}


def shell_line(command: list[str], n: int, d: int) -> str:
    """The command as one would type it (paths relative to the repository)."""
    words = [
        os.path.relpath(w, ROOT) if w.startswith(str(ROOT)) else w
        for w in (Path(w).name if w in (python(), mpirun()) else w for w in command)
    ]
    return f"MPI_PYMC_N={n} MPI_PYMC_D={d} " + " ".join(words)


def measured(command: list[str], ranks: int | None, record: Path) -> list[str]:
    """``command`` under the wrapper, under ``mpirun -n ranks`` when ``ranks`` is given."""
    wrap = [python(), str(Path(__file__).resolve()), "--child-measure", str(record), "--"]
    launch = [mpirun(), "-n", str(ranks)] if ranks else []
    return [*launch, *wrap, *command]


def run_pymc(path: Path, n: int, args, thin: int, work: Path) -> dict:
    """The PyMC process, measured; its record merged with the wrapper's."""
    record, detail = work / "pymc-rss.json", work / "pymc.json"
    worker = [python(), str(Path(__file__).resolve()), "--child-pymc", str(path)]
    worker += ["--thin", str(thin), "--record", str(detail)]
    start = time.perf_counter()
    proc = subprocess.run(
        measured(worker, None, record), cwd=ROOT, env=env_for(n, args.d), capture_output=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"PyMC worker failed:\n{proc.stderr.decode()[-3000:]}")
    rss = json.loads(record.read_text())
    result = json.loads(detail.read_text())
    return {
        "tool": "pymc",
        "ranks": 1,
        "command": f"pm.compute_log_likelihood(idata, model=model)  # thin {thin}",
        "launch_wall_s": wall,
        "wall_s": [rss["wall_s"]],
        "peak_rss_bytes": [rss["peak_rss_bytes"]],
        "compute_s": result["compute_s"],
        "load_s": result["load_s"],
        "chains": result["chains"],
        "draws": result["draws"],
        "group_bytes": result["group_bytes"],
        "group_disk_bytes": None,
    }


def run_mpi_pymc(path: Path, n: int, args, ranks: int, thin: int, work: Path) -> dict:
    """``postprocess --log-likelihood`` on ``ranks`` ranks, every rank measured."""
    import h5py

    for old in work.glob("mpi-rss-*.json"):
        old.unlink()
    command = [python(), "-m", "mpi_pymc", "postprocess", MODEL, str(path), "--log-likelihood"]
    command += ["--overwrite-groups"] + (["--thin", str(thin)] if thin > 1 else [])
    command += ["--memory-budget", args.memory_budget]
    full = measured(command, ranks, work / "mpi-rss-{rank}.json")
    start = time.perf_counter()
    proc = subprocess.run(full, cwd=ROOT, env=env_for(n, args.d), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"postprocess failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    records = sorted(
        (json.loads(p.read_text()) for p in work.glob("mpi-rss-*.json")), key=lambda r: r["rank"]
    )
    wrote = re.search(r"wrote .* in ([0-9.]+)s", proc.stdout)
    block = re.search(r"blocks of (\d+) draws", proc.stdout)
    with h5py.File(path, "r") as f:
        var = f["log_likelihood"]["y"]
        shape, itemsize = var.shape, var.dtype.itemsize
        shards = f["log_likelihood"].attrs.get("mpi_pymc_shards")
    shard_dir = path.parent / (path.name + ".parts") / str(shards) if shards else None
    disk = sum(p.stat().st_size for p in shard_dir.iterdir()) if shard_dir else None
    return {
        "tool": "mpi_pymc",
        "ranks": ranks,
        "command": shell_line([mpirun(), "-n", str(ranks), *command], n, args.d),
        "launch_wall_s": wall,
        "wall_s": [r["wall_s"] for r in records],
        "peak_rss_bytes": [r["peak_rss_bytes"] for r in records],
        "compute_s": float(wrote.group(1)) if wrote else None,
        "block_draws": int(block.group(1)) if block else None,
        "chains": shape[0],
        "draws": shape[1],
        "group_bytes": shape[0] * shape[1] * shape[2] * itemsize,
        "group_disk_bytes": disk,
    }


def gib(size: float) -> str:
    """Bytes as GiB, 2 decimals."""
    return f"{size / (1 << 30):.2f}"


def table(rows: list[dict]) -> str:
    """The markdown table of every measured row."""
    lines = [
        "| N | chains x draws | tool | ranks | group (GiB) | peak RSS per rank (GiB) "
        "| wall per rank (s) | compute (s) |",
        "|---:|---|---|---:|---:|---|---|---:|",
    ]
    for r in rows:
        rss = ", ".join(gib(b) for b in r["peak_rss_bytes"])
        wall = ", ".join(f"{w:.1f}" for w in r["wall_s"])
        compute = f"{r['compute_s']:.1f}" if r["compute_s"] is not None else "-"
        lines.append(
            f"| {r['n']:,} | {r['chains']} x {r['draws']} | {r['tool']} | {r['ranks']} "
            f"| {gib(r['group_bytes'])} | {rss} | {wall} | {compute} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    """The machine and the versions the figures were measured with."""
    import arviz
    import h5py
    import jax
    import pymc

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    mpi = subprocess.run([mpirun(), "--version"], capture_output=True, text=True).stdout
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / (1 << 20), 1) if mem else None,
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pymc": pymc.__version__,
        "arviz": arviz.__version__,
        "jax": jax.__version__,
        "h5py": h5py.__version__,
        "mpi": mpi.splitlines()[0] if mpi else None,
        "commit": commit,
    }


def bench(args) -> None:
    """Every size, every tool; prints the table and writes results.json and results.md."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine(), "args": vars(args), "samples": {}, "skipped": []}
    rows: list[dict] = []
    largest = max(args.sizes)
    try:
        for n in args.sizes:
            path = work / f"n{n}.h5"
            full_bytes = args.chains * args.full_draws * n * 8
            compare = args.compare_draws.get(n, args.compare_draws.get(0, 0))
            if compare < 1:
                raise SystemExit(f"--compare-draws names no draws for N={n}")
            draws = compare
            if n == largest and args.full_draws > compare:
                free = free_bytes(work)
                if free > full_bytes + DISK_MARGIN:
                    draws = args.full_draws
                else:
                    info["skipped"].append(
                        f"N={n}: {args.chains} x {args.full_draws} draws needs "
                        f"{gib(full_bytes)} GiB, {gib(free)} GiB free"
                    )
            if draws % compare:
                raise SystemExit("--full-draws must be a multiple of --compare-draws")
            thin = draws // compare
            info["samples"][n] = sample(path, n, args, draws)
            measured_rows = [run_pymc(path, n, args, thin, work)]
            for ranks in args.ranks:
                measured_rows.append(run_mpi_pymc(path, n, args, ranks, thin, work))
            if thin > 1:
                for ranks in args.full_ranks:
                    measured_rows.append(run_mpi_pymc(path, n, args, ranks, 1, work))
            for row in measured_rows:
                row["n"] = n
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    finally:
        if not args.keep_files:
            for n in args.sizes:
                remove_sample(work / f"n{n}.h5")
    md = table(rows)
    print(md)
    info["rows"] = rows
    (results / "results.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    m = info["machine"]
    commands = (
        "\n".join(f"    {s['command']}" for s in info["samples"].values() if s["command"])
        + "\n"
        + "\n".join(f"    {r['command']}" for r in rows if r["tool"] == "mpi_pymc")
    )
    skipped = "".join(f"\nSkipped: {s}\n" for s in info["skipped"])
    (results / "results.md").write_text(
        f"# Log-likelihood group at scale: peak memory per rank and wall time\n\n"
        f"`python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; load average at "
        f"start {', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}; "
        f"python {m['python']}, pymc {m['pymc']}, arviz {m['arviz']}, jax {m['jax']}, "
        f"h5py {m['h5py']}, {m['mpi']}, commit {m['commit']}.\n\n{md}\n{skipped}\n"
        "Peak RSS and wall: each process (every MPI rank, the PyMC process) measured alone "
        "(`os.wait4`), not the launcher. Compute: mpi_pymc's pass as it prints it (model load, "
        "compile, compute, write); PyMC's `compute_log_likelihood` call alone (the group stays "
        "in memory, nothing is written). Group: chains x draws x N float64 values.\n\n"
        f"Commands:\n\n{commands}\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (and the hidden child modes)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50000,500000", help="rows N, comma-separated")
    parser.add_argument("--d", type=int, default=20, help="columns (MPI_PYMC_D)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument(
        "--compare-draws",
        default="50000:1000,500000:250",
        help="draws per chain PyMC and mpi_pymc both compute, per N (N:draws,...) or one number",
    )
    parser.add_argument(
        "--full-draws",
        type=int,
        default=1000,
        help="at the largest N, mpi_pymc alone on this many draws per chain if the disk has "
        "room (0: skip)",
    )
    parser.add_argument("--ranks", default="1,2", help="mpi_pymc rank counts")
    parser.add_argument("--full-ranks", default="2", help="rank counts of the full-draws pass")
    parser.add_argument("--sample-ranks", type=int, default=2, help="ranks of the sampling run")
    parser.add_argument("--memory-budget", default="1G", help="postprocess --memory-budget")
    parser.add_argument("--workdir", default="/tmp/loglik_bench")
    parser.add_argument(
        "--results", default=str(ROOT / "benchmarks/results/cpu/loglik-memory"), help="output dir"
    )
    parser.add_argument(
        "--reuse-samples",
        action="store_true",
        help="reuse sample files of the same chains and draws (N, tune, seed unchecked)",
    )
    parser.add_argument("--keep-files", action="store_true", help="keep the sample files")
    parser.add_argument("--child-measure", metavar="RECORD", help=argparse.SUPPRESS)
    parser.add_argument("--child-pymc", metavar="H5", help=argparse.SUPPRESS)
    parser.add_argument("--thin", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_measure or args.child_pymc:
        return args
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.ranks = [int(r) for r in args.ranks.split(",")]
    args.full_ranks = [int(r) for r in args.full_ranks.split(",") if r]
    args.compare_draws = {
        int(n) if draws else 0: int(draws or n)
        for n, _, draws in (item.partition(":") for item in args.compare_draws.split(","))
    }
    return args


def main(argv: list[str] | None = None) -> int:
    """Dispatch: the benchmark, or one of the child modes."""
    args = parse_args(argv)
    if args.child_measure:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return child_measure(args.child_measure, command)
    if args.child_pymc:
        pymc_worker(args.child_pymc, args.thin, args.record)
        return 0
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
