"""Data shards' split log-density (``mpi_pymc.model.row_shards``): prior once plus the shards'
likelihoods equals the whole program, value and gradient; models that cannot be split are
refused with one line naming the variable."""

from __future__ import annotations

import jax
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from mpi_pymc.core.config import UserError
from mpi_pymc.model.compile import compile_model
from mpi_pymc.model.row_shards import ShardLayout, check_split, split_rows

POINTS = 20
RTOL = 1e-12


def logistic(n=203, d=3, seed=1):
    """A GLM with ``coords=`` (the dim's length is in the graph) and an odd row count."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4).astype("int8")
    with pm.Model(coords={"obs": range(n), "k": range(d)}) as model:
        X_data = pm.Data("X", X, dims=("obs", "k"))
        alpha = pm.Normal("alpha", 0.0, 2.5)
        beta = pm.Normal("beta", 0.0, 1.0, dims="k")
        pm.Bernoulli("y", logit_p=alpha + X_data @ beta, observed=y, dims="obs")
    return model


def hierarchical(n=150, groups=7, seed=2):
    """Varying intercepts by a group-index column (no dims: the rows come from the data)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, size=n)
    x = rng.normal(size=n)
    y = rng.normal(0.5 * x + rng.normal(size=groups)[group], 0.7)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        tau = pm.HalfNormal("tau", 1.0)
        z = pm.Normal("z", 0.0, 1.0, shape=groups)
        b = pm.Normal("b", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        idx = pm.Data("group", group)
        pm.Normal("y", mu + tau * z[idx] + b * x, sigma, observed=y)
    return model


def two_observed(n=120, seed=3):
    """Two likelihoods over the same rows (a Normal and a Poisson) and a Potential on the
    parameters alone."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    with pm.Model(coords={"row": range(n)}) as model:
        a = pm.Normal("a", 0.0, 1.0)
        s = pm.HalfNormal("s", 1.0)
        c = pm.Normal("c", 0.0, 0.5)
        pm.Normal("y", a * x, s, observed=rng.normal(x, 1.0), dims="row")
        pm.Poisson("k", pt.exp(c + 0.3 * x), observed=rng.poisson(np.exp(0.3 * x)), dims="row")
        pm.Potential("shrink", -0.5 * (a - c) ** 2)
    return model


def _points(compiled, count=POINTS, seed=4):
    rng = np.random.default_rng(seed)
    return compiled.initial_flat + rng.uniform(-2.0, 2.0, size=(count, compiled.dimension))


def _value_and_grad(fn):
    return jax.jit(jax.value_and_grad(fn))


@pytest.mark.parametrize("build", [logistic, hierarchical, two_observed])
def test_prior_plus_shards_equals_whole_program(build):
    model = build()
    compiled = compile_model(model)
    whole = _value_and_grad(compiled.logdensity)
    points = _points(compiled)
    for shards in (2, 4):
        split = split_rows(model, compiled, shards)
        check_split(split, compiled, model, points[:3])
        parts = _value_and_grad(split.logdensity)
        for flat in points:
            want, want_grad = whole(flat, compiled.data)
            got, got_grad = parts(flat)
            scale = max(1.0, abs(float(want)))
            assert abs(float(got) - float(want)) <= RTOL * scale, (shards, got, want)
            grad_scale = max(1.0, float(np.max(np.abs(want_grad))))
            np.testing.assert_allclose(got_grad, want_grad, rtol=RTOL, atol=RTOL * grad_scale)


def test_a_shard_holds_only_its_rows():
    model = logistic(n=10)
    split = split_rows(model, compile_model(model), 4)
    assert split.layout.bounds() == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert set(split.row_names) == {"y", "X"}
    for shard in range(4):
        rows = split.shard_rows(shard)
        assert all(len(r) == 3 for r in rows)  # 3 rows per shard, the mask's padding included
    mask = np.concatenate([split.shard_rows(s)[-1] for s in range(4)])
    assert mask.tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0]
    assert split.prior_data == ()  # the design matrix goes with the rows only


def test_no_second_copy_of_the_rows_is_made():
    """The split reads the model's own arrays, and a shard that needs no padding is a view of
    them: the rank holds the model's rows and its shards, not a padded copy of the whole."""
    model = logistic(n=12)
    split = split_rows(model, compile_model(model), 4)
    X = model["X"].get_value(borrow=True)
    column = split.row_names.index("X")
    assert np.shares_memory(split.rows[column], X)
    for shard in range(4):
        assert np.shares_memory(split.shard_rows(shard)[column], X)
    padded = split_rows(model, compile_model(model), 5)  # 12 rows: 3, 3, 2, 2, 2 (padded to 3)
    assert np.shares_memory(padded.shard_rows(0)[column], X)
    assert not np.shares_memory(padded.shard_rows(4)[column], X)
    np.testing.assert_array_equal(padded.shard_rows(4)[column], X[[10, 11, 11]])


def test_the_posterior_is_constrained_with_only_the_data_it_needs():
    """``constrain`` has its own data: none for a GLM (a data-parallel run then drops the whole
    rows once it holds its shards), the rows for a Deterministic over them."""
    assert compile_model(logistic(n=12)).constrain_data == ()
    with logistic(n=12) as model:
        pm.Deterministic("eta", model["X"] @ model["beta"])
    compiled = compile_model(model)
    assert len(compiled.constrain_data) == 1
    np.testing.assert_array_equal(compiled.constrain_data[0], model["X"].get_value())


def test_layout_pads_with_copies_of_the_last_real_row():
    layout = ShardLayout(5, 2)
    assert layout.per_shard == 3
    assert layout.pad(np.arange(5)).tolist() == [0, 1, 2, 3, 4, 4]
    assert layout.mask().tolist() == [True, True, True, True, True, False]


def _refusal(model, shards=2) -> str:
    with pytest.raises(UserError) as info:
        compiled = compile_model(model)
        split = split_rows(model, compiled, shards)
        check_split(split, compiled, model, _points(compiled, 3))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_mvnormal_over_the_rows_is_refused():
    rng = np.random.default_rng(5)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.MvNormal("y", mu * np.ones(40), np.eye(40) + 0.5, observed=rng.normal(size=40))
    message = _refusal(model)
    assert "'y'" in message and "not one per row" in message


def test_random_walk_observed_is_refused():
    rng = np.random.default_rng(6)
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.GaussianRandomWalk(
            "walk", sigma=sigma, init_dist=pm.Normal.dist(), observed=rng.normal(size=60).cumsum()
        )
    message = _refusal(model)
    assert "'walk'" in message and "not one per row" in message


def test_potential_over_the_rows_is_refused():
    rng = np.random.default_rng(7)
    x = rng.normal(size=50)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        x_data = pm.Data("x", x)
        pm.Normal("y", a * x_data, 1.0, observed=rng.normal(size=50))
        pm.Potential("smooth", -pt.sum((a * x_data[1:] - a * x_data[:-1]) ** 2))
    message = _refusal(model)
    assert "'smooth'" in message and "Potential" in message and "x" in message


def test_rows_mixed_inside_the_likelihood_are_caught_by_the_comparison():
    """A ``cumsum`` over the rows keeps the row axis: only the comparison with the whole
    program shows it mixes them."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=80)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        x_data = pm.Data("x", x)
        pm.Normal("y", a * pt.cumsum(x_data), 1.0, observed=rng.normal(size=80))
    message = _refusal(model)
    assert "'y'" in message and "does not split over rows" in message


def test_more_shards_than_rows_is_refused():
    message = _refusal(logistic(n=3), shards=4)
    assert "--data-shards must be between 1 and the model's 3 rows, got 4" in message


def test_per_row_parameter_is_refused():
    rng = np.random.default_rng(9)
    with pm.Model(coords={"obs": range(30)}) as model:
        z = pm.Normal("z", 0.0, 1.0, dims="obs")
        pm.Normal("y", z, 1.0, observed=rng.normal(size=30), dims="obs")
    message = _refusal(model)
    assert "'z'" in message and "per-row parameter" in message
