"""Chains' starting points (mpi_pymc.sampling.chain_group.initial_positions), in-process: jittered
as PyMC's ``jitter+adapt_diag``, retried along each chain's own stream when the log-density is
not finite, and independent of which other chains are started with it."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from mpi_pymc.core import seeding
from mpi_pymc.model.compile import compile_model
from mpi_pymc.sampling.chain_group import INIT_BLOCK, initial_positions

CUT = 0.3  # log-density -inf above this: about a third of the jittered candidates fail
ROOT_SEED = 1234


@pytest.fixture(scope="module")
def cut_model():
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("cut", pt.switch(x > CUT, -np.inf, 0.0))
    return model, compile_model(model, "float64")


def _first_finite_candidate(base: np.ndarray, chain: int, tries: int = 10) -> np.ndarray:
    rng = seeding.jitter_rng(ROOT_SEED, chain)
    for _ in range(tries):
        candidate = base + rng.uniform(-1.0, 1.0, size=base.shape)
        if candidate[0] <= CUT:
            return candidate
    return base


def test_each_chain_takes_the_first_finite_candidate_of_its_own_stream(cut_model) -> None:
    model, compiled = cut_model
    chains = range(INIT_BLOCK + 6)  # more than one block: the padding path runs too
    found = initial_positions(compiled, model, ROOT_SEED, chains)
    starts = found.positions
    expected = np.stack([_first_finite_candidate(compiled.initial_flat, c) for c in chains])
    np.testing.assert_array_equal(starts, expected)
    # The log-density reported with each start is the model's there (the translation check
    # compares it with PyTensor's).
    logp = model.compile_logp()
    for c in (0, INIT_BLOCK + 5):
        point = {model.value_vars[0].name: starts[c].reshape(())}
        np.testing.assert_allclose(found.logdensity[c], logp(point), rtol=1e-12)
    np.testing.assert_allclose(found.initial_logdensity, logp(model.initial_point()), rtol=1e-12)
    assert np.all(starts[:, 0] <= CUT)
    # Some chains did need a retry, or this test would not exercise one.
    first = np.stack(
        [
            compiled.initial_flat + seeding.jitter_rng(ROOT_SEED, c).uniform(-1, 1, size=1)
            for c in chains
        ]
    )
    assert (first[:, 0] > CUT).sum() >= 5


def test_a_chains_start_does_not_depend_on_its_group(cut_model) -> None:
    model, compiled = cut_model
    together = initial_positions(compiled, model, ROOT_SEED, range(0, 80)).positions
    apart = initial_positions(compiled, model, ROOT_SEED, range(37, 41)).positions
    np.testing.assert_array_equal(together[37:41], apart)
