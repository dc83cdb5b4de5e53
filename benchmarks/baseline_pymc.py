"""Run one PyMC sampler on a model file and print one JSON line with its figures.

    python benchmarks/baseline_pymc.py MODEL.py[:NAME] --method pymc|numpyro_vectorized|
        numpyro_parallel|nutpie|nutpie_jax|nutpie_jax_low_rank --chains 4 --tune 1000
        --draws 1000 --seed 1 --cores 8

What PyMC users run today, for ``python -m mpi_pymc bench baseline``: ``pm.sample()`` with its
default sampler (``cores=`` the machine's cores), ``pm.sample(nuts_sampler="numpyro")`` with
``chain_method="vectorized"`` or ``"parallel"``, and ``pm.sample(nuts_sampler="nutpie")`` with
nutpie's default numba backend or (``nutpie_jax``) its JAX backend and JAX gradients, and
(``nutpie_jax_low_rank``) the same with ``low_rank_modified_mass_matrix=True``, nutpie's
low-rank-plus-diagonal mass matrix, everything else at nutpie's defaults. Always
float64. The model is loaded the way ``mpi_pymc run`` loads it. Min bulk/tail ESS and max R-hat
come from ArviZ over every posterior variable (Deterministics included, as mpi_pymc does).
The caller times the whole process; the phases inside are reported too. A missing sampler
(nutpie not installed) prints ``{"ok": false, "skipped": ...}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
# The same names as mpi_pymc.bench.launching.BASELINE_METHODS (a test checks); not imported
# from there so that nothing of mpi_pymc is imported before the timed imports below.
METHODS = (
    "pymc",
    "numpyro_vectorized",
    "numpyro_parallel",
    "nutpie",
    "nutpie_jax",
    "nutpie_jax_low_rank",
)


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL.py[:NAME]")
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--nutpie-backend", default="numba", help="numba (nutpie's default) or jax")
    return parser.parse_args(argv)


def _emit(record: dict) -> None:
    record["script_seconds"] = time.perf_counter() - T_START
    print(json.dumps(record, default=str), flush=True)


def _versions() -> dict:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in (
        "pymc",
        "pytensor",
        "arviz",
        "numpy",
        "jax",
        "jaxlib",
        "numpyro",
        "nutpie",
        "numba",
    ):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def _flat(dataset):
    import numpy as np

    return np.concatenate([np.ravel(v.values) for v in dataset.data_vars.values()])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    record = {
        "method": args.method,
        "chains": args.chains,
        "tune": args.tune,
        "draws": args.draws,
        "seed": args.seed,
        "cores": args.cores,
        "precision": "float64",
        "ok": False,
    }
    if args.method == "numpyro_parallel":
        # PyMC's documented way to give pmap one CPU device per chain; it must precede JAX.
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={args.chains}"
            ).strip()
    if args.method.startswith("nutpie"):
        try:
            import nutpie  # noqa: F401
        except ImportError as exc:
            record["skipped"] = (
                f"nutpie not installed for Python {platform.python_version()}: {exc}"
            )
            record["versions"] = {"python": platform.python_version()}
            _emit(record)
            return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    t0 = time.perf_counter()
    import arviz as az
    import numpy as np
    import pymc as pm
    import pytensor

    pytensor.config.floatX = "float64"
    record["import_seconds"] = time.perf_counter() - t0

    from mpi_pymc.model.loading import load_model

    t0 = time.perf_counter()
    model_path, _, name = args.model.partition(":")
    model = load_model(model_path, name or None)
    record["model_seconds"] = time.perf_counter() - t0

    kwargs: dict = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "target_accept": args.target_accept,
        "progressbar": False,
        "model": model,
    }
    if args.method == "pymc":
        kwargs["cores"] = args.cores
        record["devices"] = ["cpu"]
    elif args.method.startswith("numpyro"):
        import jax

        jax.config.update("jax_enable_x64", True)
        kwargs["nuts_sampler"] = "numpyro"
        kwargs["nuts_sampler_kwargs"] = {"chain_method": args.method.split("_", 1)[1]}
        record["devices"] = [str(d) for d in jax.devices()]
    else:
        # nutpie_jax: the log-density and its gradient both through JAX (nutpie's "jax" backend
        # with gradient_backend="jax"), the fastest nutpie a PyMC user can pick on a CPU.
        # nutpie_jax_low_rank: the same with nutpie's low-rank-plus-diagonal mass matrix
        # (pm.sample passes the keyword through to nutpie.sample).
        backend = "jax" if args.method.startswith("nutpie_jax") else args.nutpie_backend
        kwargs["nuts_sampler"] = "nutpie"
        kwargs["nuts_sampler_kwargs"] = {"cores": args.cores, "backend": backend}
        if backend == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
            kwargs["nuts_sampler_kwargs"]["gradient_backend"] = "jax"
        if args.method == "nutpie_jax_low_rank":
            kwargs["nuts_sampler_kwargs"]["low_rank_modified_mass_matrix"] = True
        record["nutpie_backend"] = backend
        record["devices"] = ["cpu"] if backend == "numba" else [str(d) for d in jax.devices()]

    if "nuts_sampler_kwargs" in kwargs:
        record["nuts_sampler_kwargs"] = dict(kwargs["nuts_sampler_kwargs"])
    t0 = time.perf_counter()
    idata = pm.sample(**kwargs)
    record["sample_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    posterior = idata.posterior
    ess_bulk = _flat(az.ess(posterior, method="bulk"))
    ess_tail = _flat(az.ess(posterior, method="tail"))
    r_hat = _flat(az.rhat(posterior))
    dtypes = sorted({str(v.dtype) for v in posterior.data_vars.values()})
    record.update(
        ok=True,
        min_ess_bulk=float(np.nanmin(ess_bulk)),
        min_ess_tail=float(np.nanmin(ess_tail)),
        max_r_hat=float(np.nanmax(r_hat)),
        parameters=int(ess_bulk.size),
        posterior_dtypes=dtypes,
        draws_recorded=int(posterior.sizes["draw"]),
        chains_recorded=int(posterior.sizes["chain"]),
        divergences=(
            int(idata.sample_stats["diverging"].sum())
            if "diverging" in idata.sample_stats
            else None
        ),
        draws_per_second=args.chains * args.draws / record["sample_seconds"],
        versions=_versions(),
    )
    record["diagnostics_seconds"] = time.perf_counter() - t0
    _emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
