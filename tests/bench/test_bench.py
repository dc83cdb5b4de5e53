"""mpi_pymc.bench: the command line (options, validation) and real tiny benchmark runs.

The arithmetic is tested in test_bench_figures.py, the markdown in test_bench_report.py."""

from __future__ import annotations

import argparse
import json
import math
import os

import pytest
from helpers import EXAMPLES, mpirun_or_skip

from mpi_pymc import bench
from mpi_pymc.bench.cli import parse_int_list, powers_of_two_up_to
from mpi_pymc.bench.figures import meets_goal

LOGISTIC = EXAMPLES / "logistic_regression.py"
TINY = ["--env", "MPI_PYMC_N=300", "--env", "MPI_PYMC_D=2", "--draws", "30", "--tune", "30"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpi_pymc")
    commands = parser.add_subparsers(dest="command")
    bench.add_parser(commands)
    return parser.parse_args(["bench", *argv])


def test_parse_int_list():
    assert parse_int_list("1,2, 4,") == [1, 2, 4]
    for bad in ("1,x", "0", "", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_int_list(bad)
    assert powers_of_two_up_to(6) == [1, 2, 4]
    assert powers_of_two_up_to(1) == [1]


def test_baseline_methods_match_the_script_and_have_titles():
    import importlib.util

    from mpi_pymc.bench.launching import BASELINE_METHODS, BASELINE_SCRIPT, BASELINE_TITLES

    spec = importlib.util.spec_from_file_location("baseline_pymc", BASELINE_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.METHODS == BASELINE_METHODS
    assert set(BASELINE_TITLES) == set(BASELINE_METHODS)
    assert "nutpie_jax_low_rank" in BASELINE_METHODS
    assert "low_rank_modified_mass_matrix" in BASELINE_TITLES["nutpie_jax_low_rank"]
    parsed = script._parse(["m.py", "--method", "nutpie_jax_low_rank"])
    assert parsed.method == "nutpie_jax_low_rank"


def test_every_baseline_is_accepted_and_a_list_is_run_in_order(tmp_path):
    from mpi_pymc.bench.cli import _validated
    from mpi_pymc.bench.launching import BASELINE_METHODS

    args = parse(["baseline", str(LOGISTIC), "--ranks", "1", "--outdir", str(tmp_path),
                  "--baselines", "nutpie_jax_low_rank,numpyro_parallel"])  # fmt: skip
    assert _validated(args)["baselines"] == ["nutpie_jax_low_rank", "numpyro_parallel"]
    args = parse(["baseline", str(LOGISTIC), "--ranks", "1", "--outdir", str(tmp_path)])
    assert _validated(args)["baselines"] == list(BASELINE_METHODS)


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


def test_answer_mode_times_launch_to_goal_against_pymc_defaults(tmp_path):
    mpirun_or_skip()
    outdir = tmp_path / "answer"
    args = parse(["answer", str(LOGISTIC), "--ranks", "2", "--until-ess", "150",
                  "--until-tail-ess", "100",
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
    assert 50 <= point["draws"] < 2000
    assert point["min_ess_bulk"] >= 150 and point["min_ess_tail"] >= 100
    assert results["settings"]["until_tail_ess"] == 100 and point["tail_goal"] == 100
    (row,) = results["comparisons"]
    assert row["mpi_pymc_meets_goal"]
    assert row["baseline_meets_goal"] == meets_goal(baseline, 150, tail_goal=100)
    assert math.isclose(row["wall_fraction"], point["wall_seconds"] / baseline["wall_seconds"])
    assert "time to answer" in (outdir / "results.md").read_text()
    assert _png(outdir / "answer.png")
