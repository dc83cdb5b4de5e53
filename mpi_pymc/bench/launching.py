"""Launching the benchmark's runs: one ``mpi_pymc run`` under ``mpirun``, ``srun`` or no
launcher (:func:`run_point`), or one PyMC sampler in its own process (:func:`run_baseline`),
each timed wall-clock and turned into one record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mpi_pymc.bench.figures import ess_per_rank_hour, ess_per_second, point_figures
from mpi_pymc.bench.machine import first_cores

BASELINE_METHODS = (
    "pymc",
    "numpyro_vectorized",
    "numpyro_parallel",
    "nutpie",
    "nutpie_jax",
    "nutpie_jax_low_rank",
)
BASELINE_TITLES = {
    "pymc": "pm.sample() (PyMC NUTS, cores=N)",
    "numpyro_vectorized": 'pm.sample(nuts_sampler="numpyro", chain_method="vectorized")',
    "numpyro_parallel": 'pm.sample(nuts_sampler="numpyro", chain_method="parallel")',
    "nutpie": 'pm.sample(nuts_sampler="nutpie")',
    "nutpie_jax": 'pm.sample(nuts_sampler="nutpie", nuts_sampler_kwargs={"backend": "jax", '
    '"gradient_backend": "jax"})',
    "nutpie_jax_low_rank": 'pm.sample(nuts_sampler="nutpie", nuts_sampler_kwargs={"backend": '
    '"jax", "gradient_backend": "jax", "low_rank_modified_mass_matrix": True})',
}
TIMING_KEYS = (
    "startup",
    "load_model",
    "compile",
    "init",
    "jit",
    "warmup",
    "sampling",
    "io",
    "diagnostics",
    "total",
)
# The repository: the folder that holds mpi_pymc/ and benchmarks/.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
BASELINE_SCRIPT = PACKAGE_ROOT / "benchmarks" / "baseline_pymc.py"


class BenchError(Exception):
    """A mistake in the benchmark settings; reported as one line."""


def choose_launcher(requested: str) -> str:
    if requested != "auto":
        return requested
    return "srun" if os.environ.get("SLURM_JOB_ID") else "mpirun"


def launcher_prefix(launcher: str, ranks: int, extra: Sequence[str] = ()) -> list[str]:
    """``mpirun -n R`` / ``srun -n R`` (plus the user's launcher arguments); [] for ``none``."""
    if launcher == "none":
        if ranks != 1:
            raise BenchError(f"--launcher none runs one rank only, but {ranks} ranks were asked")
        return []
    if launcher == "srun":
        found = shutil.which("srun")
        if found is None:
            raise BenchError("--launcher srun but no srun on PATH: run inside a SLURM job")
        return [found, "-n", str(ranks), *extra]
    from mpi_pymc.core.mpi_env import find_mpirun

    try:
        return [find_mpirun(), "-n", str(ranks), *extra]
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None


def subprocess_env(launcher: str, extra: dict[str, str]) -> dict[str, str]:
    from mpi_pymc.core.mpi_env import local_mpi_env, without_own_transports

    env = local_mpi_env() if launcher == "mpirun" else without_own_transports(dict(os.environ))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def read_output_attrs(path: str) -> dict:
    """Root attributes of an mpi_pymc output file, JSON strings decoded."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            elif hasattr(value, "tolist"):
                value = value.tolist()
            out[key] = value
    return out


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_error_line(log: Path) -> str:
    text = _tail(log, 60).splitlines()
    for line in reversed(text):
        if "error" in line.lower() or "Error" in line:
            return line.strip()
    return text[-1].strip() if text else "no output"


def run_point(
    *,
    label: str,
    model: str,
    ranks: int,
    chains: int,
    run_options: list[str],
    launcher: str,
    launcher_args: Sequence[str],
    workdir: Path,
    timeout: float,
    env_extra: dict[str, str],
    ranks_per_node: int | None,
    keep_output: bool,
    python: str = sys.executable,
    cold_cache: bool = True,
    cores_per_rank: int | None = None,
) -> dict:
    """Launch one ``mpi_pymc run`` and turn its output file into one benchmark record.

    ``cold_cache``: the run gets an empty JAX compilation cache of its own, so its wall time
    includes compiling as a first run does (PyMC's samplers keep no cache between runs either).
    ``cores_per_rank``: the job runs inside the first ``ranks x cores_per_rank`` cores of this
    machine (``taskset``), so every point of a scaling series gets the same cores per rank.
    """
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    out = workdir / "runs" / f"{label}.h5"
    log = workdir / "logs" / f"{label}.log"
    cpus = first_cores(ranks * cores_per_rank) if cores_per_rank else []
    cmd = [
        *(["taskset", "-c", ",".join(map(str, cpus))] if cpus else []),
        *launcher_prefix(launcher, ranks, launcher_args),
        python, "-m", "mpi_pymc", "run", model, "--chains", str(chains), "--out", str(out),
        "--overwrite", "--no-progress", *run_options,
    ]  # fmt: skip
    record: dict = {
        "label": label,
        "ranks": ranks,
        "chains": chains,
        "chains_per_rank": chains / ranks,
        "launcher": launcher,
        "command": cmd,
        "log": str(log),
        "jax_cache": "cold" if cold_cache else "warm (the user's cache)",
        "ok": False,
    }
    env = dict(env_extra)
    cache = workdir / "jax-cache" / label
    if cold_cache:
        shutil.rmtree(cache, ignore_errors=True)
        env["MPI_PYMC_JAX_CACHE"] = str(cache)
    start = time.perf_counter()
    try:
        with open(log, "w") as handle:
            proc = subprocess.run(
                cmd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=subprocess_env(launcher, env),
                timeout=timeout,
                check=False,
            )
        record["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        record["wall_seconds"] = time.perf_counter() - start
        record["error"] = f"timed out after {timeout:.0f}s"
        return record
    finally:
        if cold_cache:
            shutil.rmtree(cache, ignore_errors=True)
    record["wall_seconds"] = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        record["error"] = f"exit {proc.returncode}: {_last_error_line(log)}"
        return record
    try:
        attrs = read_output_attrs(str(out))
    except OSError as exc:
        record["error"] = f"cannot read {out}: {exc}"
        return record
    timings = attrs.get("timings") or {}
    diagnostics = attrs.get("diagnostics") or {}
    draws = int(attrs.get("draws", 0))
    if attrs.get("draws_completed"):  # --until-ess: the draws taken, not the cap
        draws = int(min(attrs["draws_completed"]))
    record.update(
        ok=bool(timings) and bool(diagnostics),
        chains=int(attrs.get("chains", chains)),
        ranks=int(attrs.get("ranks", ranks)),
        draws=draws,
        tune=int(attrs.get("tune", 0)),
        # The known phases in order (None where this version of run does not time one), then
        # any phase added later.
        timings={**{k: timings.get(k) for k in TIMING_KEYS}, **timings},
        # Time inside the run that no phase claims (output set-up, waits between phases).
        unaccounted_seconds=(
            timings["total"] - sum(v or 0.0 for k, v in timings.items() if k != "total")
            if timings.get("total") is not None
            else None
        ),
        divergences=attrs.get("divergences"),
        stopped_by=attrs.get("stopped_by"),
        io=attrs.get("io"),
        binding=attrs.get("binding"),
        versions=attrs.get("versions"),
        settings=attrs.get("settings"),
        diagnostics=diagnostics,
    )
    if not record["ok"]:
        record["error"] = "output file lacks timings or diagnostics (run did not finish)"
        return record
    record.update(
        point_figures(
            ranks=record["ranks"],
            chains=record["chains"],
            draws=draws,
            wall_seconds=record["wall_seconds"],
            timings=timings,
            diagnostics=diagnostics,
            ranks_per_node=ranks_per_node,
        )
    )
    if keep_output:
        record["output"] = str(out)
    else:
        from mpi_pymc.output.layout import remove_output

        remove_output(str(out))
        for leftover in out.parent.glob(f"{out.name}.ckpt*"):
            if leftover.is_file():
                leftover.unlink()
    return record


def run_baseline(
    *,
    method: str,
    model: str,
    chains: int,
    tune: int,
    draws: int,
    seed: int,
    cores: int,
    workdir: Path,
    timeout: float,
    env_extra: dict[str, str],
    script: Path = BASELINE_SCRIPT,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
) -> dict:
    """One PyMC sampler in its own process, timed wall-clock (imports and compile included)."""
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    log = workdir / "logs" / f"baseline-{method}.log"
    cmd = [
        python, str(script), model, "--method", method, "--chains", str(chains), "--tune",
        str(tune), "--draws", str(draws), "--seed", str(seed), "--cores", str(cores),
        *extra_args,
    ]  # fmt: skip
    record: dict = {
        "label": method,
        "method": method,
        "title": BASELINE_TITLES.get(method, method),
        "chains": chains,
        "tune": tune,
        "draws": draws,
        "command": cmd,
        "log": str(log),
        "ok": False,
    }
    if not script.exists():
        record["error"] = f"baseline script {script} not found (it lives in the repository)"
        return record
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=subprocess_env("none", env_extra),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        record["wall_seconds"] = time.perf_counter() - start
        record["error"] = f"timed out after {timeout:.0f}s"
        log.write_text(_text(exc.stdout) + _text(exc.stderr))
        return record
    record["wall_seconds"] = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    reported = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                reported = json.loads(line)
                break
            except ValueError:
                continue
    if reported is None:
        record["error"] = f"exit {proc.returncode}: {_last_error_line(log)}"
        return record
    record.update({k: v for k, v in reported.items() if k not in ("method", "chains")})
    record["returncode"] = proc.returncode
    record["ok"] = bool(reported.get("ok")) and proc.returncode == 0
    if record["ok"]:
        record["min_ess_bulk_per_second"] = ess_per_second(
            reported.get("min_ess_bulk"), record["wall_seconds"]
        )
        record["draws_per_wall_second"] = chains * draws / record["wall_seconds"]
        record["ess_per_rank_hour"] = ess_per_rank_hour(
            reported.get("min_ess_bulk"), record["wall_seconds"], 1
        )
    return record


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
