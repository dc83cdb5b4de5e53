"""The steps of ``benchmarks/gpu_check.sh``, one per call, each appending a JSON line.

    python benchmarks/gpu_check.py facts --out DIR
    python benchmarks/gpu_check.py reference --out DIR --chains 4 --tune 1000 --draws 1000
    python benchmarks/gpu_check.py mpi --out DIR --name f64-4 --chains 4 --precision float64 ...
    python benchmarks/gpu_check.py collect --out DIR

Every step writes one line to ``DIR/steps.jsonl`` (so a step killed by the shell's ``timeout``
loses only itself); ``collect`` turns them into ``DIR/gpu_results.json`` and
``DIR/gpu_results.md``. The runs reuse :mod:`mpi_pymc.bench`: the reference row is PyMC's own
``pm.sample(nuts_sampler="numpyro")`` (benchmarks/baseline_pymc.py), the other rows are
``python -m mpi_pymc run`` on one rank without a launcher. The model and its size come from the
environment (``MPI_PYMC_N``, ``MPI_PYMC_D``) set by the shell script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mpi_pymc import bench  # noqa: E402

MODEL = ROOT / "examples" / "logistic_regression.py"
WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check_work"))


def _timeout() -> float:
    # The shell gives each step STEP_LIMIT seconds; keep some to write the record when the
    # launched run overruns.
    return max(10.0, float(os.environ.get("STEP_LIMIT", "600")) - 15.0)


def _append(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record["finished_at"] = time.strftime("%H:%M:%S")
    with open(out / "steps.jsonl", "a") as f:
        f.write(json.dumps(bench.clean_json(record), default=str) + "\n")


def _show_log(record: dict, lines: int = 30) -> None:
    log = record.get("log")
    if log and Path(log).exists():
        print(f"--- last lines of {log}")
        print("\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:]))
        print("---")


def _size() -> dict:
    return {k: os.environ[k] for k in ("MPI_PYMC_N", "MPI_PYMC_D") if k in os.environ}


def _matmul_error() -> dict:
    """Worst relative error of a float32 (100,000 x 54) @ (54 x 64) product against float64,
    at JAX's default matmul precision and at "highest" (GPUs since Ampere default to TF32)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=(100_000, 54)).astype(np.float32)
    b = rng.normal(size=(54, 64)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    errors = {}
    for precision in ("default", "highest"):
        product = jax.jit(lambda x, y, p=precision: jnp.matmul(x, y, precision=p))(a, b)
        errors[precision] = float(np.max(np.abs(np.asarray(product) - exact) / scale))
    return errors


def step_facts(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    record: dict = {"step": "facts", "machine": bench.machine_facts(), "environment": _size()}
    versions = {}
    for name in ("pymc", "pytensor", "arviz", "jax", "jaxlib", "numpyro", "numpy", "scipy",
                 "xarray", "pandas", "mpi4py", "h5py", "numba"):  # fmt: skip
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    record["versions"] = versions
    t0 = time.perf_counter()
    import jax

    record["jax_devices"] = [str(d) for d in jax.devices()]
    record["jax_backend"] = jax.default_backend()
    record["jax_start_seconds"] = time.perf_counter() - t0
    record["float32_matmul_error"] = _matmul_error()
    t0 = time.perf_counter()
    import pymc  # noqa: F401  (the first import builds PyTensor's C helpers: pay it here)

    record["pymc_import_seconds"] = time.perf_counter() - t0
    try:
        from mpi4py import MPI

        record["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip()
    except Exception as exc:  # recorded, and the runs below will say what failed
        record["mpi_library"] = f"unavailable: {type(exc).__name__}: {exc}"
    record["ok"] = True
    print(json.dumps(record, indent=1, default=str))
    _append(args.out, record)
    return 0


def step_reference(args: argparse.Namespace) -> int:
    record = bench.run_baseline(
        method="numpyro_vectorized",
        model=str(MODEL),
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        seed=args.seed,
        cores=os.cpu_count() or 1,
        workdir=WORK,
        timeout=_timeout(),
        env_extra={},
    )
    record.update(step="reference", name="pymc-numpyro", precision="float64")
    _show_log(record)
    print(_line(record))
    _append(args.out, record)
    return 0 if record.get("ok") else 1


def step_mpi(args: argparse.Namespace) -> int:
    # --progress: the log then says how far a run killed at its limit got.
    options = ["--draws", str(args.draws), "--tune", str(args.tune), "--seed", str(args.seed),
               "--precision", args.precision, "--sampler", args.sampler, "--progress"]  # fmt: skip
    if args.gpus_per_rank is not None:
        options += ["--gpus-per-rank", str(args.gpus_per_rank)]
    if args.adapt_group > 1:
        options += ["--adapt-group", str(args.adapt_group)]
    if args.until_ess:
        options += ["--until-ess", str(args.until_ess), "--chunk-draws", str(args.chunk_draws)]
    record = bench.run_point(
        label=f"gpu-{args.name}",
        model=str(MODEL),
        ranks=1,
        chains=args.chains,
        run_options=options,
        launcher="none",
        launcher_args=(),
        workdir=WORK,
        timeout=_timeout(),
        env_extra={},
        ranks_per_node=1,
        keep_output=False,
        cold_cache=not args.warm_cache,
    )
    record.update(
        step="mpi",
        name=args.name,
        precision=args.precision,
        adapt_group=args.adapt_group,
        until_ess=args.until_ess,
        jax_cache="warm" if args.warm_cache else "cold",
    )
    record.pop("diagnostics", None)
    _show_log(record)
    print(_line(record))
    _append(args.out, record)
    return 0 if record.get("ok") else 1


def _line(record: dict) -> str:
    f = bench.format_number
    if not record.get("ok"):
        return f"{record.get('name')}: FAILED: {record.get('error')}"
    return (
        f"{record['name']}: {record['chains']} chains {record['precision']}, "
        f"{record['tune']}+{record['draws']}: wall {f(record['wall_seconds'])}s, "
        f"draws/s (sampling) {f(record.get('draws_per_second'))}, "
        f"draws/s (whole run) {f(record.get('draws_per_wall_second'))}, "
        f"min bulk ESS/s {f(record.get('min_ess_bulk_per_second'))}, "
        f"max R-hat {f(record.get('max_r_hat'), 'rhat')}"
    )


def collect(out: Path, smoke: bool) -> dict:
    steps = []
    path = out / "steps.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                steps.append(json.loads(line))
    facts = next((s for s in steps if s.get("step") == "facts"), {})
    reference = next((s for s in steps if s.get("step") == "reference"), None)
    rows = [s for s in steps if s.get("step") in ("reference", "mpi", "skipped", "killed")]
    keys = ("name", "step", "ok", "error", "chains", "precision", "tune", "draws",
            "wall_seconds", "sample_seconds", "timings", "draws_per_second",
            "draws_per_wall_second", "min_ess_bulk", "min_ess_tail", "min_ess_bulk_per_second",
            "max_r_hat", "divergences", "devices", "binding", "command")  # fmt: skip
    table = [{k: s.get(k) for k in keys if k in s} for s in rows]
    ref_rate = (reference or {}).get("min_ess_bulk_per_second")
    for row in table:
        rate = row.get("min_ess_bulk_per_second")
        row["ess_per_second_vs_reference"] = rate / ref_rate if rate and ref_rate else None
        sampling = (row.get("timings") or {}).get("sampling")
        ess = row.get("min_ess_bulk")
        row["ess_per_sampling_second"] = ess / sampling if ess and sampling else None
    return {
        "smoke": smoke,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": str(MODEL.relative_to(ROOT)),
        "environment": facts.get("environment") or _size(),
        "machine": facts.get("machine"),
        "versions": facts.get("versions"),
        "mpi_library": facts.get("mpi_library"),
        "jax_devices": facts.get("jax_devices"),
        "rows": table,
        "steps_recorded": [s.get("name") or s.get("step") for s in steps],
    }


def render(results: dict) -> str:
    f = bench.format_number
    machine = results.get("machine") or {}
    gpus = ", ".join(g.get("name", "?") for g in machine.get("gpus") or []) or "no GPU"
    size = ", ".join(f"{k}={v}" for k, v in (results.get("environment") or {}).items())
    smoke = " (SMOKE: tiny CPU-sized run, not a measurement)" if results["smoke"] else ""
    lines = [
        f"## GPU check{smoke}",
        "",
        f"- Model: `{results['model']}` ({size}); one rank; {gpus}; JAX devices "
        f"{results.get('jax_devices')}",
        f"- CPU: {machine.get('cpu_model')}, {machine.get('cores')} cores; MPI: "
        f"{results.get('mpi_library')}",
        f"- Versions: {results.get('versions')}",
        "",
        "| run | chains | precision | tune+draws | wall s | draws/s (sampling) | "
        "draws/s (whole run) | min bulk ESS | min bulk ESS/s | vs reference | "
        "min bulk ESS per sampling s | max R-hat |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        name = {"reference": "PyMC pm.sample numpyro (reference)",
                "mpi": f"mpi_pymc {r.get('name')}"}.get(r["step"], r.get("name"))  # fmt: skip
        if not r.get("ok"):
            lines.append(f"| {name} | {r.get('chains') or ''} | {r.get('precision') or ''} "
                         "| | | | | | | | | "
                         f"failed: {str(r.get('error'))[:80].replace('|', '/')} |")  # fmt: skip
            continue
        lines.append(
            f"| {name} | {r['chains']} | {r['precision']} | {r['tune']}+{r['draws']} | "
            f"{f(r['wall_seconds'])} | {f(r.get('draws_per_second'))} | "
            f"{f(r.get('draws_per_wall_second'))} | {f(r.get('min_ess_bulk'), 'int')} | "
            f"{f(r.get('min_ess_bulk_per_second'))} | "
            f"{f(r.get('ess_per_second_vs_reference'), 'ratio')} | "
            f"{f(r.get('ess_per_sampling_second'))} | {f(r.get('max_r_hat'), 'rhat')} |"
        )
    lines += [
        "",
        "Wall s: the whole process (imports, compile, warmup, sampling, diagnostics). Min bulk "
        "ESS/s is per wall second; per sampling s counts the sampling phase alone (after "
        "warmup), which is what more draws per chain tend to. draws/s (sampling) for the "
        "reference is chains × draws / seconds inside pm.sample (compile and tuning included).",
    ]
    return "\n".join(lines) + "\n"


def step_collect(args: argparse.Namespace) -> int:
    results = collect(args.out, args.smoke)
    (args.out / "gpu_results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = render(results)
    (args.out / "gpu_results.md").write_text(markdown)
    print(markdown)
    return 0 if results["rows"] and all(r.get("ok") for r in results["rows"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one step of benchmarks/gpu_check.sh")
    parser.add_argument("step", choices=("facts", "reference", "mpi", "collect"))
    parser.add_argument("--out", type=Path, required=True, help="results folder ($OUT)")
    parser.add_argument("--name", default="run")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=bench.DEFAULT_SEED)
    parser.add_argument("--precision", default="float64")
    parser.add_argument("--sampler", default="nuts", help="mpi_pymc's --sampler")
    parser.add_argument("--gpus-per-rank", type=int)
    parser.add_argument("--adapt-group", type=int, default=1, help="mpi_pymc's --adapt-group")
    parser.add_argument("--until-ess", type=int, help="mpi_pymc's --until-ess (time to answer)")
    parser.add_argument("--chunk-draws", type=int, default=50, help="with --until-ess (50)")
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="use the user's JAX compilation cache (kept between runs) instead of an empty one",
    )
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    steps = {"facts": step_facts, "reference": step_reference, "mpi": step_mpi,
             "collect": step_collect}  # fmt: skip
    return steps[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
