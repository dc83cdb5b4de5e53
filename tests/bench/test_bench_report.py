"""mpi_pymc.bench.report: the markdown tables and strict JSON."""

from __future__ import annotations

import json

from mpi_pymc.bench.figures import add_scaling, baseline_ratios, point_figures
from mpi_pymc.bench.report import clean_json, render_markdown


def test_clean_json_makes_strict_json():
    cleaned = clean_json({"a": float("nan"), "b": [1.0, float("inf")], "c": "Open MPI\x00"})
    assert cleaned == {"a": None, "b": [1.0, None], "c": "Open MPI"}
    json.dumps(cleaned, allow_nan=False)


# --- markdown ---------------------------------------------------------------------------------


def _point(ranks: int, sampling: float, ok: bool = True) -> dict:
    if not ok:
        return {"ok": False, "label": f"weak-r{ranks}", "ranks": ranks, "chains": 4 * ranks,
                "error": "exit 1: r1 | ValueError: boom"}  # fmt: skip
    point = {
        "ok": True,
        "label": f"weak-r{ranks}",
        "ranks": ranks,
        "chains": 4 * ranks,
        "tune": 100,
        "draws": 100,
        "wall_seconds": 10.0 + sampling,
        "timings": {"compile": 1.5, "warmup": 3.0, "sampling": sampling, "total": 9.0 + sampling},
    }
    point.update(
        point_figures(
            ranks=ranks,
            chains=4 * ranks,
            draws=100,
            wall_seconds=point["wall_seconds"],
            timings=point["timings"],
            diagnostics={
                "parameters": ["a"],
                "ess_bulk": [350.0 * ranks],
                "ess_tail": [300.0],
                "r_hat": [1.004],
            },  # fmt: skip
            ranks_per_node=2,
        )
    )
    return point


def _results(mode: str, points: list[dict]) -> dict:
    return {
        "mode": mode,
        "model": "/x/logistic_regression.py",
        "environment": {"MPI_PYMC_N": "300"},
        "settings": {
            "tune": 100,
            "draws": 100,
            "precision": "float64",
            "sampler": "numpyro",
            "chain_method": "vectorized",
            "seed": 1,
        },  # fmt: skip
        "machine": {
            "cpu_model": "Test CPU",
            "cores": 2,
            "gpus": [],
            "hostname": "h",
            "mpi_library": "Open MPI v5",
        },  # fmt: skip
        "launcher": "mpirun",
        "ranks_per_node": 2,
        "ranks_per_node_source": "--ranks-per-node",
        "versions": {"python": "3.11", "pymc": "5"},
        "created_at": "now",
        "points": points,
    }


def test_markdown_weak_table_has_one_row_per_point_and_efficiencies():
    points = [_point(1, 4.0), _point(2, 5.0), _point(4, 0.0, ok=False)]
    add_scaling(points, "weak")
    text = render_markdown(_results("weak", points))
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].startswith("| ranks | chains | wall s |")
    assert len(table) == 2 + 3
    cells = [c.strip() for c in table[3].strip("|").split("|")]
    assert cells[0] == "2" and cells[1] == "8"
    assert cells[-2] == "80%"  # efficiency (sampling) = 4 / 5
    assert len(cells) == len(table[0].strip("|").split("|"))
    assert "failed: exit 1: r1 | ValueError" not in table[4]  # a pipe would break the table
    assert "failed" in table[4]
    assert "`MPI_PYMC_N=300`" in text and "Test CPU" in text
    assert "efficiency = T1/TN" in text


def test_markdown_baseline_lists_baselines_mpi_rows_and_ratios():
    point = _point(2, 4.0)
    results = _results("baseline", [point])
    results["baselines"] = [
        {"method": "pymc", "label": "pymc", "ok": True, "chains": 8, "tune": 100, "draws": 100,
         "wall_seconds": 30.0, "sample_seconds": 20.0, "min_ess_bulk": 500.0,
         "min_ess_bulk_per_second": 500.0 / 30.0, "max_r_hat": 1.003, "divergences": 0},
        {"method": "nutpie", "label": "nutpie", "ok": False, "chains": 8,
         "skipped": "nutpie not installed"},
    ]  # fmt: skip
    results["ratios"] = baseline_ratios([point], [results["baselines"][0]])
    text = render_markdown(results)
    assert "pm.sample() (PyMC NUTS, cores=N)" in text
    assert "nutpie not installed" in text
    assert "mpi_pymc (mpirun -n 2)" in text
    ratio = point["min_ess_bulk_per_second"] / (500.0 / 30.0)
    assert f"{ratio:.2f}×" in text
