"""compile_model's JAX configuration: float32 matrix products at full precision.

GPUs since Ampere run JAX's default-precision float32 products in TF32 (10-bit mantissa). On an
H200 that put 3.5e-4 relative error into the logistic regression's log-density and made
float32 runs crawl (benchmarks/README.md), so the compiled log-density must ask for HIGHEST.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pymc as pm
import pytest

from mpi_pymc.model.compile import compile_model


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_matrix_products_ask_for_highest_precision(precision: str) -> None:
    rng = np.random.default_rng(0)
    with pm.Model() as model:
        X = pm.Data("X", rng.normal(size=(50, 3)))
        beta = pm.Normal("beta", 0.0, 1.0, shape=3)
        pm.Normal("y", X @ beta, 1.0, observed=rng.normal(size=50))
    compiled = compile_model(model, precision)
    text = jax.jit(compiled.logdensity).lower(compiled.initial_flat, compiled.data).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert dots, "the model has a matrix product"
    for line in dots:
        assert re.search(r"precision = \[HIGHEST, HIGHEST\]", line), line
