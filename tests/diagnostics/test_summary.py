"""mpi_pymc.diagnostics.summary: the table a finished run prints and its warnings."""

from __future__ import annotations

import numpy as np

from mpi_pymc.diagnostics.summary import convergence_warnings, divergence_warning, summary_table


def test_summary_table_worst_first() -> None:
    stats = {
        "mean": np.array([0.1, 2.0, -3.0, 5.0]),
        "sd": np.array([1.0, 0.5, 2.0, 0.0]),
        "mcse_mean": np.array([0.01, 0.02, 0.5, 0.0]),
        "r_hat": np.array([1.001, 1.002, 1.30, np.nan]),
        "ess_bulk": np.array([2000.0, 150.0, 12.0, 4000.0]),
        "ess_tail": np.array([1800.0, 900.0, 30.0, 4000.0]),
    }
    table = summary_table(["alpha", "beta", "sigma_long_name", "const"], stats)
    lines = table.splitlines()
    assert lines[0].split() == [
        "parameter", "mean", "sd", "mcse_mean", "r_hat", "ess_bulk", "ess_tail"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["sigma_long_name", "beta", "alpha", "const"]
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert "1.300" in lines[1] and "nan" in lines[4]


def test_convergence_warnings_name_parameters() -> None:
    good = {
        "r_hat": np.array([1.0, 1.005]),
        "ess_bulk": np.array([900.0, 1200.0]),
        "ess_tail": np.array([800.0, 700.0]),
    }
    assert convergence_warnings(good, chains=4, names=["a", "b"]) == []
    bad = {
        "r_hat": np.array([1.0, 1.2, np.nan]),
        "ess_bulk": np.array([900.0, 50.0, 400.0]),
        "ess_tail": np.array([300.0, 20.0, 400.0]),
    }
    messages = convergence_warnings(bad, chains=4, names=["a", "b", "c"])
    assert len(messages) == 3
    rhat_message, bulk_message, tail_message = messages
    assert "R-hat is above 1.01 for 1 parameter(s) (b; worst 1.200)" in rhat_message
    assert "Bulk ESS is below 400" in bulk_message and "(b;" in bulk_message
    assert "Tail ESS" in tail_message and "(b, a;" in tail_message
    assert not any("c;" in message or ", c" in message for message in messages)


def test_divergence_warning_counts_them_and_says_what_to_change() -> None:
    assert divergence_warning(0, 4000, 0.8) == []
    (line,) = divergence_warning(172, 4000, 0.8)
    assert line.startswith("172 divergent transition(s) after warmup (4.30% of 4000 draws)")
    assert "can be biased" in line and "Raise --target-accept from 0.8 (to 0.95" in line
    (unknown,) = divergence_warning(1, 1000)
    assert "Raise --target-accept (to 0.95" in unknown
