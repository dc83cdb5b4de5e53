"""The benchmark's PNG plots: speed-up and efficiency against ranks or chains, samplers side by
side (baseline) and time to answer (answer)."""

from __future__ import annotations

from pathlib import Path


def write_plots(results: dict, outdir: Path) -> list[str]:
    """speedup.png and efficiency.png (or baseline.png); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = results["mode"]
    written: list[str] = []
    if mode == "answer":
        comparisons = [c for c in results.get("comparisons", []) if c["wall_fraction"]]
        if not comparisons:
            return written
        runs = {p["label"]: p for p in results["points"]}
        pymc = {b["label"]: b for b in results["baselines"]}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels = [f"ESS {c['goal']:,}" for c in comparisons]
        slots = list(range(len(comparisons)))
        ax.bar([x - 0.2 for x in slots], [runs[c["mpi_pymc"]]["wall_seconds"] for c in comparisons],
               width=0.4, label="mpi_pymc --until-ess")  # fmt: skip
        ax.bar([x + 0.2 for x in slots],
               [pymc[c["baseline"]]["wall_seconds"] for c in comparisons], width=0.4,
               label="PyMC default run (" + ", ".join(pymc) + ")")  # fmt: skip
        ax.set_xticks(slots, labels)
        ax.set_ylabel("wall seconds from launch (lower is better)")
        ax.set_title(f"{Path(results['model']).name}: time to answer")
        ax.legend()
        return [_save_figure(plt, fig, outdir / "answer.png")]
    if mode == "baseline":
        rows = [b for b in results.get("baselines", []) if b.get("ok")]
        rows += [p for p in results.get("points", []) if p.get("ok")]
        if not rows:
            return written
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
        labels = [r.get("title") or f"mpi_pymc {r['label']}" for r in rows]
        ax.barh(labels, [r["min_ess_bulk_per_second"] or 0 for r in rows], color="tab:blue")
        ax.set_xlabel("min bulk ESS per wall second (higher is better)")
        ax.set_title(f"{Path(results['model']).name}: samplers on one machine")
        return [_save_figure(plt, fig, outdir / "baseline.png")]

    points = [p for p in results.get("points", []) if p.get("ok")]
    if not points:
        return written
    unit = "chains" if mode == "chains" else "ranks"
    xs = [p[unit] for p in points]
    xlabel = "chains on one rank" if mode == "chains" else "MPI ranks"
    title = {"weak": "Weak scaling (fixed chains per rank)",
             "strong": "Strong scaling (fixed total chains)",
             "chains": "Chains per rank (one rank)"}[mode]  # fmt: skip

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(xs, [p["ideal_speedup"] for p in points], "k--", label="ideal")
    for kind, style in (("sampling", "o-"), ("total", "s-"), ("wall", "^-")):
        ax.plot(xs, [p.get(f"speedup_{kind}") for p in points], style, label=f"{kind} time")
    _integer_log_axes(ax, xs, log_y=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("throughput gain" if mode == "chains" else
                  "scaled speed-up" if mode == "weak" else "speed-up")  # fmt: skip
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    written.append(_save_figure(plt, fig, outdir / "speedup.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.axhline(1.0, color="k", linestyle="--", label="ideal")
    for kind, style in (("sampling", "o-"), ("total", "s-"), ("wall", "^-")):
        ax.plot(xs, [p.get(f"efficiency_{kind}") for p in points], style, label=f"{kind} time")
    _integer_log_axes(ax, xs, log_y=False)
    highest = max([p.get("efficiency_sampling") or 0 for p in points] + [1.0])
    ax.set_ylim(0, max(1.2, 1.1 * highest))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("parallel efficiency")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    written.append(_save_figure(plt, fig, outdir / "efficiency.png"))
    return written


def _save_figure(plt, fig, path: Path) -> str:
    """Lay out, write at 120 dpi, and release one figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _integer_log_axes(ax, xs: list[int], log_y: bool) -> None:
    """Base-2 log axes labelled with plain numbers (1, 2, 4...), not powers."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
