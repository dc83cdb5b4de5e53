"""Import a user's model file and return its ``pm.Model``, with one-line errors for mistakes."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from mpi_pymc.core.config import UserError

_FIX = "define a module-level `model = pm.Model(...)` or a function `build_model()` returning one"


def _where(exc: BaseException, path: str) -> str:
    """``model.py:LINE`` of the innermost frame inside the user's file, if any."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == Path(path).resolve():
            return f"{path}:{frame.lineno}"
    return path


def import_model_file(path: str):
    """Execute the model file as a fresh module and return it."""
    module_name = f"mpi_pymc_user_model_{abs(hash(str(Path(path).resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import model file '{path}': is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UserError(
            f"syntax error in {path}:{exc.lineno}: {exc.msg} — run `python {path}` to see it"
        ) from None
    except Exception as exc:  # user code: report it as one line
        raise UserError(
            f"{_where(exc, path)} raised {type(exc).__name__}: {exc} — "
            f"run `python {path}` to see the traceback"
        ) from None
    return module


def load_model(path: str, name: str | None = None):
    """Return the ``pm.Model`` that ``path[:name]`` defines (or ``path.pkl`` holds)."""
    import pymc as pm

    if path.endswith(".pkl"):
        return unpickle_model(path)
    module = import_model_file(path)
    if name is not None:
        if not hasattr(module, name):
            raise UserError(f"{path} has no attribute '{name}' (from {path}:{name}): {_FIX}")
        candidates = [(name, getattr(module, name))]
    else:
        candidates = [
            (n, getattr(module, n)) for n in ("model", "build_model") if hasattr(module, n)
        ]
        if not candidates:
            raise UserError(f"no model found in {path}: {_FIX}")
    attr, obj = candidates[0]
    if callable(obj) and not isinstance(obj, pm.Model):
        try:
            obj = obj()
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"{_where(exc, path)}: {attr}() raised {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(obj, pm.Model):
        raise UserError(f"{path}:{attr} is a {type(obj).__name__}, not a pm.Model: {_FIX}")
    check_model(obj, f"the model in {path}")
    return obj


def unpickle_model(path: str):
    """The ``pm.Model`` the Python API pickled (``sample(model, ranks=N)``, ``submit``)."""
    import pickle

    try:
        with open(path, "rb") as handle:
            model = pickle.load(handle)
    except Exception as exc:  # unpickling user objects may raise anything
        raise UserError(
            f"cannot unpickle the model in {path} ({type(exc).__name__}: {exc}): every rank "
            "needs the packages and modules the model was built with"
        ) from None
    check_model(model, f"the model in {path}")
    return model


def check_model(model, what: str) -> None:
    """Refuse models NUTS cannot sample; ``what`` names the model in the message."""
    import pymc as pm

    if not isinstance(model, pm.Model):
        raise UserError(f"{what} is a {type(model).__name__}, not a pm.Model: pass a pm.Model")
    if not model.free_RVs:
        raise UserError(f"{what} has no free random variables: nothing to sample")
    discrete = [v.name for v in model.free_RVs if v.type.dtype.startswith(("int", "uint", "bool"))]
    if discrete:
        raise UserError(
            f"{what} has discrete free variables ({', '.join(discrete)}); NUTS needs "
            "continuous ones: marginalize them out (e.g. pymc_extras.marginalize) or make them "
            "observed"
        )
