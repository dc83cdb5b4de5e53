"""Reference posteriors of the model-coverage suite (issue #16), from ``pm.sample``.

Run once by a developer, not by CI, on the 3.11 stack (the JSON serves both stacks):

    .venv/bin/python tests/coverage_models/make_references.py [--only NAME[,NAME]]

For every model file next to this script it runs ``pm.sample(draws=1000, tune=1000, chains=4)``
with numpyro's NUTS, or PyMC's own NUTS where the numpyro path cannot translate the model (an
op without a JAX implementation in the installed PyTensor, e.g. ``erfcx`` of a censored or
truncated Normal on the pymc 5 / pytensor 2 stack), and writes ``references/<family>.json``:
the sampler used (and why it fell back), the versions, the InferenceData's structure
(posterior variables with their dims and coords, sample_stats, observed_data and constant_data
variables) and, per scalar element of every posterior variable in C order, mean, sd (ddof=1),
mcse_mean, mcse_sd and ess_bulk from ArviZ.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCES = HERE / "references"
DRAWS, TUNE, CHAINS = 1000, 1000, 4
SEED = 20261204


def families() -> list[str]:
    return sorted(
        p.stem for p in HERE.glob("*.py") if p.name != Path(__file__).name and p.stem[0] != "_"
    )


def build(family: str):
    """The family's model, and the sampler its module asks for (``REFERENCE_SAMPLER``; None:
    numpyro's NUTS where the numpyro path translates the model)."""
    spec = importlib.util.spec_from_file_location(f"coverage_{family}", HERE / f"{family}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(), getattr(module, "REFERENCE_SAMPLER", None)


def _group(idata, name: str):
    """A group as an xarray Dataset (ArviZ 0.x InferenceData or 1.x DataTree), or None."""
    try:
        group = idata[name]
    except KeyError:
        return None
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def _json_values(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def sample(model, family: str, sampler: str | None = None):
    import pymc as pm

    common = dict(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED, progressbar=False)
    if sampler == "pymc":
        reason = "the model file asks for PyMC's NUTS (REFERENCE_SAMPLER)"
    else:
        try:
            with model:
                return pm.sample(nuts_sampler="numpyro", **common), "numpyro", None
        except Exception as exc:  # noqa: BLE001 - any translation failure means: PyMC's NUTS
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            print(f"{family}: numpyro path failed ({reason}); using PyMC's NUTS", flush=True)
    with model:
        return pm.sample(nuts_sampler="pymc", cores=2, **common), "pymc", reason


def describe(idata, sampler: str, fallback_reason: str | None, seconds: float) -> dict:
    import arviz as az
    import jax
    import numpy as np
    import numpyro
    import pymc as pm
    import pytensor

    if hasattr(az, "Numba"):
        # ArviZ 0.2x's numba path of mcse(method="sd") fails on arrays ("only 0-dimensional
        # arrays can be converted to Python scalars"); its numpy path is the same formula.
        az.Numba.disable_numba()
    posterior = _group(idata, "posterior")
    stats = _group(idata, "sample_stats")
    variables, elements = {}, {}
    for name, data in posterior.data_vars.items():
        dims = [d for d in data.dims if d not in ("chain", "draw")]
        variables[name] = {
            "dims": dims,
            "shape": [int(posterior.sizes[d]) for d in dims],
            "coords": {d: _json_values(posterior[d].values) for d in dims},
        }
        draws = data.transpose("chain", "draw", *dims).values.astype(float)
        one = posterior[[name]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per = {
                "mean": draws.mean(axis=(0, 1)),
                "sd": draws.std(axis=(0, 1), ddof=1),
                "mcse_mean": az.mcse(one, method="mean")[name].values,
                "mcse_sd": az.mcse(one, method="sd")[name].values,
                "ess_bulk": az.ess(one, method="bulk")[name].values,
            }
        elements[name] = {k: np.asarray(v, dtype=float).ravel().tolist() for k, v in per.items()}
    groups = {}
    for name in ("observed_data", "constant_data"):
        group = _group(idata, name)
        groups[name] = sorted(group.data_vars) if group is not None else []
    finite_ess = [e for v in elements.values() for e in v["ess_bulk"] if np.isfinite(e)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(posterior)
    max_rhat = float(np.nanmax([np.nanmax(rhat[v].values) for v in rhat.data_vars]))
    return {
        "sampler": sampler,
        "fallback_reason": fallback_reason,
        "settings": {"draws": DRAWS, "tune": TUNE, "chains": CHAINS, "random_seed": SEED},
        "versions": {
            "python": platform.python_version(),
            "pymc": pm.__version__,
            "arviz": az.__version__,
            "pytensor": pytensor.__version__,
            "numpyro": numpyro.__version__,
            "jax": jax.__version__,
        },
        "seconds": round(seconds, 1),
        "quality": {
            "divergences": int(stats["diverging"].values.sum()),
            "max_r_hat": max_rhat,
            "min_ess_bulk": float(min(finite_ess)),
        },
        "posterior": variables,
        "sample_stats": sorted(stats.data_vars),
        "groups": groups,
        "elements": elements,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help="comma-separated families (file stems) to redo"
    )
    args = parser.parse_args(argv)
    names = families()
    if args.only:
        wanted = [n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"no model file for {', '.join(unknown)} in {HERE}")
        names = wanted
    # numpyro's chain_method="parallel" needs one JAX device per chain to run them at once.
    flag = f"--xla_force_host_platform_device_count={CHAINS}"
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), flag]))
    warnings.filterwarnings("ignore", category=FutureWarning)
    REFERENCES.mkdir(exist_ok=True)
    for family in names:
        start = time.perf_counter()
        model, asked = build(family)
        idata, sampler, reason = sample(model, family, asked)
        result = describe(idata, sampler, reason, time.perf_counter() - start)
        path = REFERENCES / f"{family}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        quality = result["quality"]
        print(
            f"{family}: {sampler}, {result['seconds']} s, divergences {quality['divergences']}, "
            f"max r_hat {quality['max_r_hat']:.4f}, min ess_bulk {quality['min_ess_bulk']:.0f}"
            f" -> {path.relative_to(HERE.parent.parent)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
