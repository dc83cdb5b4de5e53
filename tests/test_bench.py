"""mpi_pymc.bench: the scaling arithmetic, the markdown, and real tiny benchmark runs."""

from __future__ import annotations

import argparse
import json
import math
import os

import pytest
from helpers import EXAMPLES, mpirun_or_skip

from mpi_pymc import bench

LOGISTIC = EXAMPLES / "logistic_regression.py"
TINY = ["--env", "MPI_PYMC_N=300", "--env", "MPI_PYMC_D=2", "--draws", "30", "--tune", "30"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpi_pymc")
    commands = parser.add_subparsers(dest="command")
    bench.add_parser(commands)
    return parser.parse_args(["bench", *argv])


# --- arithmetic -------------------------------------------------------------------------------


def test_weak_scaling_efficiency_is_t1_over_tn():
    figures = bench.scaling([1, 2, 4], [10.0, 10.0, 12.5], "weak")
    assert [f["efficiency"] for f in figures] == pytest.approx([1.0, 1.0, 0.8])
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 3.2])
    assert [f["ideal_speedup"] for f in figures] == [1.0, 2.0, 4.0]


def test_strong_scaling_efficiency_is_t1_over_n_tn():
    seconds = [12.0, 6.0, 4.0]
    figures = bench.scaling([1, 2, 4], seconds, "strong")
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 3.0])
    expected = [seconds[0] / (n * t) for n, t in zip([1, 2, 4], seconds, strict=True)]
    assert [f["efficiency"] for f in figures] == pytest.approx(expected)
    assert figures[2]["efficiency"] == pytest.approx(0.75)


def test_scaling_is_relative_to_the_smallest_point_in_any_order():
    figures = bench.scaling([4, 2], [6.0, 10.0], "strong")
    # From 2 ranks (speed-up 2 by definition) to 4: 2 * 10 / 6.
    assert figures[1] == {"speedup": pytest.approx(2.0), "ideal_speedup": 2.0, "efficiency": 1.0}
    assert figures[0]["speedup"] == pytest.approx(20 / 6)
    assert figures[0]["efficiency"] == pytest.approx(20 / 24)


def test_chains_sweep_ideal_starts_at_one():
    figures = bench.scaling([4, 16, 64], [10.0, 20.0, 40.0], "chains")
    assert [f["ideal_speedup"] for f in figures] == [1.0, 4.0, 16.0]
    assert [f["speedup"] for f in figures] == pytest.approx([1.0, 2.0, 4.0])
    assert [f["efficiency"] for f in figures] == pytest.approx([1.0, 0.5, 0.25])


def test_scaling_with_a_zero_time_gives_no_figure_and_rejects_unknown_modes():
    assert bench.scaling([1, 2], [10.0, 0.0], "weak")[1]["efficiency"] is None
    assert bench.scaling([], [], "weak") == []
    with pytest.raises(ValueError):
        bench.scaling([1], [1.0], "baseline")


def test_ess_per_rank_hour_and_per_node_hour():
    assert bench.ess_per_second(1000.0, 100.0) == pytest.approx(10.0)
    per_rank_hour = bench.ess_per_rank_hour(1000.0, 100.0, ranks=4)
    assert per_rank_hour == pytest.approx(10.0 * 3600 / 4)
    assert bench.ess_per_node_hour(per_rank_hour, 8) == pytest.approx(72000.0)
    assert bench.ess_per_rank_hour(None, 100.0, 4) is None
    assert bench.ess_per_node_hour(None, 8) is None
    assert bench.ess_per_second(10.0, 0.0) is None


def test_point_figures_skip_nan_parameters():
    diagnostics = {
        "parameters": ["a", "b", "c"],
        "ess_bulk": [800.0, float("nan"), 400.0],
        "ess_tail": [300.0, 200.0, float("nan")],
        "r_hat": [1.001, float("nan"), 1.02],
    }
    figures = bench.point_figures(
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
    bench.add_scaling(points, "weak")
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
    ratios = bench.baseline_ratios(mine, theirs)
    assert [r["ess_per_second_ratio"] for r in ratios] == pytest.approx([3.0, 0.5])
    assert [r["wall_seconds_ratio"] for r in ratios] == pytest.approx([4.0, 0.5])


def test_parse_int_list():
    assert bench.parse_int_list("1,2, 4,") == [1, 2, 4]
    for bad in ("1,x", "0", "", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_int_list(bad)
    assert bench.powers_of_two_up_to(6) == [1, 2, 4]
    assert bench.powers_of_two_up_to(1) == [1]


def test_clean_json_makes_strict_json():
    cleaned = bench.clean_json({"a": float("nan"), "b": [1.0, float("inf")], "c": "Open MPI\x00"})
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
        bench.point_figures(
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
    bench.add_scaling(points, "weak")
    text = bench.render_markdown(_results("weak", points))
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
    results["ratios"] = bench.baseline_ratios([point], [results["baselines"][0]])
    text = bench.render_markdown(results)
    assert "pm.sample() (PyMC NUTS, cores=N)" in text
    assert "nutpie not installed" in text
    assert "mpi_pymc (mpirun -n 2)" in text
    ratio = point["min_ess_bulk_per_second"] / (500.0 / 30.0)
    assert f"{ratio:.2f}×" in text


# --- validation and real runs -----------------------------------------------------------------


def test_bad_settings_fail_with_one_line(tmp_path, capsys):
    code = bench.main(parse(["weak", str(tmp_path / "missing.py"), "--outdir", str(tmp_path)]))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mpi_pymc bench: error: model file '{tmp_path / 'missing.py'}' does not "
                   "exist: check the path"]  # fmt: skip
    code = bench.main(parse(["strong", str(LOGISTIC), "--ranks", "1,4", "--chains", "2"]))
    assert code == 2
    assert "fewer than 4 ranks" in capsys.readouterr().err
    code = bench.main(parse(["weak", str(LOGISTIC), "--launcher", "none", "--ranks", "1,2"]))
    assert code == 2
    code = bench.main(parse(["weak", str(LOGISTIC), "--sampler", "numpyro,hmc"]))
    assert code == 2
    assert "one sampler in weak mode" in capsys.readouterr().err
    code = bench.main(parse(["weak", str(LOGISTIC), "--ranks", "1,2", "--cores-per-rank", "64"]))
    assert code == 2
    assert "--cores-per-rank 64 x 2 ranks needs 128 cores" in capsys.readouterr().err


def _png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weak_scaling_run_on_1_and_2_ranks(tmp_path):
    mpirun_or_skip()
    outdir = tmp_path / "weak"
    pin = len(os.sched_getaffinity(0)) >= 2  # one core per rank at both points
    per_rank = ["--cores-per-rank", "1"] if pin else []
    args = parse(["weak", str(LOGISTIC), "--ranks", "1,2", "--chains-per-rank", "2", *TINY,
                  "--launcher", "mpirun", "--timeout", "300", "--outdir", str(outdir),
                  "--ranks-per-node", "2", *per_rank])  # fmt: skip
    assert bench.main(args) == 0
    results = json.loads((outdir / "results.json").read_text())
    assert results["mode"] == "weak"
    assert results["environment"]["MPI_PYMC_N"] == "300"
    points = results["points"]
    assert [(p["ranks"], p["chains"]) for p in points] == [(1, 2), (2, 4)]
    for p in points:
        assert p["ok"], p.get("error")
        assert p["draws"] == 30 and p["tune"] == 30
        for phase in ("startup", "load_model", "compile", "init", "warmup", "sampling", "io",
                      "diagnostics", "total"):  # fmt: skip
            assert p["timings"][phase] is not None and p["timings"][phase] >= 0, phase
        assert p["unaccounted_seconds"] is not None
        assert p["wall_seconds"] >= p["timings"]["total"] > 0
        assert p["min_ess_bulk"] > 0 and p["max_r_hat"] > 0.9
        assert p["ess_per_node_hour"] == pytest.approx(2 * p["ess_per_rank_hour"])
        assert p["efficiency_sampling"] > 0
        assert not (outdir / "runs" / f"{p['label']}.h5").exists()  # removed after reading
    assert points[0]["efficiency_sampling"] == pytest.approx(1.0)
    assert len(points[1]["binding"]) == 2
    if pin:
        first = sorted(os.sched_getaffinity(0))
        assert points[0]["command"][:3] == ["taskset", "-c", str(first[0])]
        assert points[0]["binding"][0]["cpu_threads"] == 1  # the lone rank got one core
        assert [b["cpus"] for b in points[1]["binding"]] == [[first[0]], [first[1]]]
        assert "1 core(s) per rank" in (outdir / "results.md").read_text()
    assert results["machine"]["mpi_library"]
    table = [line for line in (outdir / "results.md").read_text().splitlines() if line[:2] == "| "]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["1", "2"]
    assert _png(outdir / "speedup.png") and _png(outdir / "efficiency.png")


def test_baseline_mode_compares_numpyro_with_mpi_pymc_samplers(tmp_path):
    mpirun_or_skip()
    outdir = tmp_path / "baseline"
    args = parse(["baseline", str(LOGISTIC), "--ranks", "2", "--chains", "2", *TINY,
                  "--baselines", "numpyro_vectorized", "--sampler", "numpyro,hmc",
                  "--timeout", "300", "--outdir", str(outdir)])  # fmt: skip
    assert bench.main(args) == 0
    results = json.loads((outdir / "results.json").read_text())
    (baseline,) = results["baselines"]
    assert baseline["ok"], baseline.get("error")
    assert baseline["posterior_dtypes"] == ["float64"]
    assert (baseline["chains_recorded"], baseline["draws_recorded"]) == (2, 30)
    points = results["points"]
    assert [p["label"] for p in points] == ["baseline-r2-c2-numpyro", "baseline-r2-c2-hmc"]
    assert [p["settings"]["sampler"] for p in points] == ["numpyro", "hmc"]
    for point, ratio in zip(points, results["ratios"], strict=True):
        assert point["ok"] and point["ranks"] == 2 and point["jax_cache"] == "cold"
        expected = point["min_ess_bulk_per_second"] / baseline["min_ess_bulk_per_second"]
        assert ratio["mpi_pymc"] == point["label"]
        assert math.isclose(ratio["ess_per_second_ratio"], expected)
    assert not (outdir / "jax-cache").exists() or not any((outdir / "jax-cache").iterdir())
    text = (outdir / "results.md").read_text()
    assert "mpi_pymc (mpirun -n 2, hmc)" in text and "cache cold" in text
    assert _png(outdir / "baseline.png")


def test_answer_comparisons_judge_each_goal_on_both_sides():
    point = {"label": "p", "goal": 500, "ok": True, "wall_seconds": 20.0,
             "min_ess_bulk": 520.0, "min_ess_tail": 600.0, "max_r_hat": 1.004}  # fmt: skip
    short = {"label": "b", "ok": True, "wall_seconds": 50.0,
             "min_ess_bulk": 450.0, "min_ess_tail": 900.0, "max_r_hat": 1.001}  # fmt: skip
    (row,) = bench.answer_comparisons([point], [short])
    assert row["mpi_pymc_meets_goal"] and not row["baseline_meets_goal"]
    assert math.isclose(row["wall_fraction"], 0.4)
    assert not bench.meets_goal({**point, "max_r_hat": 1.02}, 500)
    assert not bench.meets_goal({**point, "min_ess_tail": None}, 500)
    assert bench.answer_comparisons([{**point, "ok": False}], [short])[0]["wall_fraction"] is None


def test_answer_mode_times_launch_to_goal_against_pymc_defaults(tmp_path):
    mpirun_or_skip()
    outdir = tmp_path / "answer"
    args = parse(["answer", str(LOGISTIC), "--ranks", "2", "--until-ess", "150",
                  "--env", "MPI_PYMC_N=300", "--env", "MPI_PYMC_D=2", "--draws", "2000",
                  "--tune", "200", "--chunk-draws", "50", "--timeout", "300",
                  "--outdir", str(outdir)])  # fmt: skip
    assert bench.main(args) == 0
    results = json.loads((outdir / "results.json").read_text())
    (baseline,) = results["baselines"]
    assert baseline["method"] == "numpyro_parallel" and baseline["ok"], baseline.get("error")
    assert (baseline["tune"], baseline["draws"]) == (1000, 1000)  # PyMC's defaults
    (point,) = results["points"]
    assert point["ok"] and point["goal"] == 150 and point["stopped_by"] == "until_ess"
    assert 50 <= point["draws"] < 2000 and point["draws"] % 50 == 0
    assert point["min_ess_bulk"] >= 150 and point["min_ess_tail"] >= 150
    (row,) = results["comparisons"]
    assert row["mpi_pymc_meets_goal"]
    assert row["baseline_meets_goal"] == bench.meets_goal(baseline, 150)
    assert math.isclose(row["wall_fraction"], point["wall_seconds"] / baseline["wall_seconds"])
    assert "time to answer" in (outdir / "results.md").read_text()
    assert _png(outdir / "answer.png")
