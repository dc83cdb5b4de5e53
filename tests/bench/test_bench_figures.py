"""mpi_pymc.bench.figures: scaling, ESS per second / rank-hour / node-hour, baseline ratios and
the time-to-answer goal."""

from __future__ import annotations

import math

import pytest

from mpi_pymc.bench.figures import (
    add_scaling,
    answer_comparisons,
    baseline_ratios,
    ess_per_node_hour,
    ess_per_rank_hour,
    ess_per_second,
    meets_goal,
    point_figures,
    scaling,
)


def test_weak_scaling_efficiency_is_t1_over_tn():
    figures = scaling([1, 2, 4], [10.0, 10.0, 12.5], "weak")
    assert [f["efficiency"] for f in figures] == pytest.approx([1.0, 1.0, 0.8])
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 3.2])
    assert [f["ideal_speedup"] for f in figures] == [1.0, 2.0, 4.0]


def test_strong_scaling_efficiency_is_t1_over_n_tn():
    seconds = [12.0, 6.0, 4.0]
    figures = scaling([1, 2, 4], seconds, "strong")
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 3.0])
    expected = [seconds[0] / (n * t) for n, t in zip([1, 2, 4], seconds, strict=True)]
    assert [f["efficiency"] for f in figures] == pytest.approx(expected)
    assert figures[2]["efficiency"] == pytest.approx(0.75)


def test_scaling_is_relative_to_the_smallest_point_in_any_order():
    figures = scaling([4, 2], [6.0, 10.0], "strong")
    # From 2 ranks (speed-up 2 by definition) to 4: 2 * 10 / 6.
    assert figures[1] == {"speedup": pytest.approx(2.0), "ideal_speedup": 2.0, "efficiency": 1.0}
    assert figures[0]["speedup"] == pytest.approx(20 / 6)
    assert figures[0]["efficiency"] == pytest.approx(20 / 24)


def test_chains_sweep_ideal_starts_at_one():
    figures = scaling([4, 16, 64], [10.0, 20.0, 40.0], "chains")
    assert [f["ideal_speedup"] for f in figures] == [1.0, 4.0, 16.0]
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 4.0])
    assert [f["efficiency"] for f in figures] == pytest.approx([1.0, 0.5, 0.25])


def test_scaling_with_a_zero_time_gives_no_figure_and_rejects_unknown_modes():
    assert scaling([1, 2], [10.0, 0.0], "weak")[1]["efficiency"] is None
    assert scaling([], [], "weak") == []
    with pytest.raises(ValueError):
        scaling([1], [1.0], "baseline")


def test_ess_per_rank_hour_and_per_node_hour():
    assert ess_per_second(1000.0, 100.0) == pytest.approx(10.0)
    per_rank_hour = ess_per_rank_hour(1000.0, 100.0, ranks=4)
    assert per_rank_hour == pytest.approx(10.0 * 3600 / 4)
    assert ess_per_node_hour(per_rank_hour, 8) == pytest.approx(72000.0)
    assert ess_per_rank_hour(None, 100.0, 4) is None
    assert ess_per_node_hour(None, 8) is None
    assert ess_per_second(10.0, 0.0) is None


def test_point_figures_skip_nan_parameters():
    diagnostics = {
        "parameters": ["a", "b", "c"],
        "ess_bulk": [800.0, float("nan"), 400.0],
        "ess_tail": [300.0, 200.0, float("nan")],
        "r_hat": [1.001, float("nan"), 1.02],
    }
    figures = point_figures(
        ranks=2,
        chains=8,
        draws=100,
        wall_seconds=20.0,
        timings={"sampling": 4.0, "total": 18.0},
        diagnostics=diagnostics,
        ranks_per_node=4,
    )
    assert figures["min_ess_bulk"] == 400.0
    assert figures["min_ess_tail"] == 200.0
    assert figures["max_r_hat"] == pytest.approx(1.02)
    assert figures["draws_per_second"] == pytest.approx(8 * 100 / 4.0)
    assert figures["min_ess_bulk_per_second"] == pytest.approx(20.0)
    assert figures["ess_per_rank_hour"] == pytest.approx(20.0 * 3600 / 2)
    assert figures["ess_per_node_hour"] == pytest.approx(20.0 * 3600 / 2 * 4)


def test_add_scaling_ignores_failed_points():
    points = [
        {"ok": True, "ranks": 1, "wall_seconds": 20.0, "timings": {"sampling": 8, "total": 16}},
        {"ok": False, "ranks": 2, "error": "boom"},
        {"ok": True, "ranks": 4, "wall_seconds": 25.0, "timings": {"sampling": 10, "total": 20}},
    ]
    add_scaling(points, "weak")
    assert points[2]["efficiency_sampling"] == pytest.approx(0.8)
    assert points[2]["efficiency_total"] == pytest.approx(0.8)
    assert points[2]["efficiency_wall"] == pytest.approx(0.8)
    assert "efficiency_sampling" not in points[1]


def test_baseline_ratios():
    mine = [{"label": "r2", "min_ess_bulk_per_second": 30.0, "wall_seconds": 10.0}]
    theirs = [
        {"label": "pymc", "ok": True, "min_ess_bulk_per_second": 10.0, "wall_seconds": 40.0},
        {"label": "nutpie", "ok": True, "min_ess_bulk_per_second": 60.0, "wall_seconds": 5.0},
    ]
    ratios = baseline_ratios(mine, theirs)
    assert [r["ess_per_second_ratio"] for r in ratios] == pytest.approx([3.0, 0.5])
    assert [r["wall_seconds_ratio"] for r in ratios] == pytest.approx([4.0, 0.5])


def test_answer_comparisons_judge_each_goal_on_both_sides():
    point = {"label": "p", "goal": 500, "ok": True, "wall_seconds": 20.0,
             "min_ess_bulk": 520.0, "min_ess_tail": 600.0, "max_r_hat": 1.004}  # fmt: skip
    short = {"label": "b", "ok": True, "wall_seconds": 50.0,
             "min_ess_bulk": 450.0, "min_ess_tail": 900.0, "max_r_hat": 1.001}  # fmt: skip
    (row,) = answer_comparisons([point], [short])
    assert row["mpi_pymc_meets_goal"] and not row["baseline_meets_goal"]
    assert math.isclose(row["wall_fraction"], 0.4)
    assert not meets_goal({**point, "max_r_hat": 1.02}, 500)
    assert not meets_goal({**point, "min_ess_tail": None}, 500)
    assert answer_comparisons([{**point, "ok": False}], [short])[0]["wall_fraction"] is None
    # A tail goal of its own (bench answer --until-tail-ess): 0 asks nothing of tail ESS.
    assert meets_goal({**point, "min_ess_tail": None}, 500, tail_goal=0)
    assert meets_goal({**point, "min_ess_tail": 100.0}, 500, tail_goal=100)
    assert not meets_goal({**point, "min_ess_tail": 99.0}, 500, tail_goal=100)
    assert not meets_goal({**point, "min_ess_bulk": 499.0}, 500, tail_goal=0)
    (bulk_only,) = answer_comparisons([{**point, "min_ess_tail": 50.0, "tail_goal": 0}], [short])
    assert bulk_only["mpi_pymc_meets_goal"] and bulk_only["tail_goal"] == 0
