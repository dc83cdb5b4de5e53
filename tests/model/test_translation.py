"""The translation checks: an op without a JAX implementation, and a JAX translation that
computes something else, each stop the run with one line naming the model variable."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import error_lines, run_ranks

# A user's own Op whose JAX translation is wrong (x**3 for x**2): the pattern of a real
# translation bug, which only a comparison with PyTensor's own backend can catch. Another Op
# has no JAX translation at all.
CUSTOM_OPS = """
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify


class Squared(Op):
    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(inputs[0] ** 2)

    def grad(self, inputs, output_grads):
        return [2 * inputs[0] * output_grads[0]]


class Square(Squared):
    pass


class Untranslatable(Squared):
    pass


@jax_funcify.register(Square)
def _wrong_square(op, **kwargs):
    return lambda x: x**3
"""

WRONG = (
    CUSTOM_OPS
    + """
with pm.Model() as model:
    mu = pm.Normal("mu", 0.0, 1.0)
    pm.Normal("y", mu, 1.0, observed=np.linspace(-1.0, 1.0, 20))
    pm.Potential("penalty", -Square()(mu - 0.3))
"""
)

MISSING = (
    CUSTOM_OPS
    + """
with pm.Model() as model:
    mu = pm.Normal("mu", 0.0, 1.0)
    pm.Potential("penalty", -Untranslatable()(mu))
"""
)


def _load(tmp_path, source, name):
    from mpi_pymc.model.loading import load_model

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return load_model(str(path), None)


def _compiled(model, precision="float64"):
    from mpi_pymc.model.compile import compile_model

    return compile_model(model, precision)


def test_an_op_without_jax_implementation_is_named_with_its_variable(tmp_path):
    from mpi_pymc.model.translation import TranslationError

    model = _load(tmp_path, MISSING, "missing")
    with pytest.raises(TranslationError) as caught:
        _compiled(model)
    message = str(caught.value)
    assert "model variable 'penalty'" in message
    assert "'Untranslatable'" in message
    assert "\n" not in message


def _check(model, compiled, chains=3):
    """The check as a run does it: the initial point and the chains' jittered starts."""
    from mpi_pymc.model.translation import check_log_density
    from mpi_pymc.sampling.chain_group import initial_positions

    starts = initial_positions(compiled, model, 1, range(chains))
    points = np.vstack([compiled.initial_flat, starts.positions])
    values = np.concatenate([[starts.initial_logdensity], starts.logdensity])
    check_log_density(model, compiled, points, values)


def test_a_wrong_translation_is_caught_and_names_the_variable(tmp_path):
    from mpi_pymc.model.translation import TranslationError

    model = _load(tmp_path, WRONG, "wrong")
    compiled = _compiled(model)
    with pytest.raises(TranslationError) as caught:
        _check(model, compiled)
    message = str(caught.value)
    assert "model variable 'penalty'" in message, message
    assert "'mu'" not in message and "'y'" not in message


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_a_correct_translation_passes(precision):
    import jax
    import pymc as pm

    try:
        with pm.Model() as model:
            sigma = pm.HalfNormal("sigma", 1.0)
            theta = pm.Normal("theta", 0.0, sigma, shape=300)
            pm.Normal("y", theta, 1.0, observed=np.linspace(-2.0, 2.0, 300))
        _check(model, _compiled(model, precision))  # raises on a disagreement
    finally:
        jax.config.update("jax_enable_x64", True)


def test_a_point_where_only_pytensor_overflows_is_not_a_disagreement():
    """FAST_COMPILE has no stabilising rewrites: log(erfc(x)) is -inf there for large x where
    the JAX translation (stabilised, as pm.sample compiles) is finite."""
    import pymc as pm
    import pytensor.tensor as pt

    from mpi_pymc.model.translation import TranslationError, check_log_density

    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("tail", pt.log(pt.erfc(x)))
    compiled = _compiled(model)
    far = np.array([[40.0]])
    jax_value = float(compiled.logdensity(far[0], compiled.data))
    assert np.isfinite(jax_value)
    check_log_density(model, compiled, far, np.array([jax_value]))
    with pytest.raises(TranslationError, match="the JAX log-density"):  # finite: judged
        check_log_density(model, compiled, np.array([[0.5]]), np.array([jax_value]))


def test_a_disagreement_just_past_the_tolerance_is_reported():
    from mpi_pymc.model.translation import RTOL, _disagrees

    reference = -12345.0
    for rtol in RTOL.values():
        assert not _disagrees(reference * (1 + 0.5 * rtol), reference, rtol)
        assert _disagrees(reference * (1 + 2 * rtol), reference, rtol)
    assert not _disagrees(-np.inf, -np.inf, 1e-6)
    assert _disagrees(-np.inf, -3.0, 1e-6)
    assert _disagrees(np.nan, -3.0, 1e-6)


@pytest.mark.parametrize(
    "source, needle",
    [
        (WRONG, "the JAX log-density of model variable 'penalty'"),
        (MISSING, "needs the PyTensor op"),
    ],
)
def test_the_cli_stops_every_rank_with_one_line(tmp_path, source, needle):
    (tmp_path / "model.py").write_text(source)
    proc = run_ranks(2, ["run", "model.py", "--draws", "5", "--tune", "5"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model.h5").exists()


def test_the_check_can_be_switched_off(tmp_path):
    (tmp_path / "model.py").write_text(WRONG)
    args = ["run", "model.py", "--draws", "5", "--tune", "5", "--no-check-logp", "--seed", "1"]
    proc = run_ranks(None, args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model.h5").exists()
