"""The PNG charts of reports/report.md (matplotlib, no display needed): the paired differences first, then the means,
the win/tie/loss shares and the score distribution."""

from __future__ import annotations

from pathlib import Path

from llm_feedback.analysis import Analysis
from llm_feedback.plot_data import score_distribution

OUTCOME_COLOURS = (("win", "#55a868"), ("tie", "#c0c0c0"), ("loss", "#c44e52"))


def write_charts(analysis: Analysis, folder: Path) -> dict[str, str]:
    """Writes the charts into `folder`; returns their Markdown image lines by name."""
    import matplotlib

    matplotlib.use("Agg")
    m = analysis.metrics
    charts = {}
    pairs = [(p, v) for p, v in m["pairwise"].items() if v["difference"] is not None]
    if pairs:
        charts["differences"] = _intervals(
            folder / "differences.png",
            "Paired differences",
            [(p.replace("_vs_", " - "), v["difference"], v["ci_low"], v["ci_high"]) for p, v in pairs],
            xlabel="mean difference per task (first model minus second), 95% interval",
            zero_line=True,
        )
    names = [n for n in analysis.models if m["models"][n]["mean"] is not None]
    charts["means"] = _intervals(
        folder / "mean_scores.png",
        "Mean score per model",
        [(n, m["models"][n]["mean"], m["models"][n]["ci_low"], m["models"][n]["ci_high"]) for n in names],
        xlabel=f"mean score ({analysis.scale.start}-{analysis.scale.stop - 1}), 95% interval",
        limits=(analysis.scale.start, analysis.scale.stop - 1),
    )
    if pairs:
        charts["win_rates"] = _win_rates(folder / "win_rates.png", pairs)
    charts["distribution"] = _distribution(folder / "score_distribution.png", analysis)
    return charts


def _intervals(path: Path, title: str, rows: list[tuple], *, xlabel: str, limits=None, zero_line=False) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(rows)))
    labels = [r[0] for r in rows]
    values = [r[1] for r in rows]
    low = [r[1] - (r[2] if r[2] is not None else r[1]) for r in rows]
    high = [(r[3] if r[3] is not None else r[1]) - r[1] for r in rows]
    ax.errorbar(values, labels, xerr=[low, high], fmt="o", capsize=5, color="#4c72b0")
    if zero_line:
        ax.axvline(0, color="#888888", linewidth=1, linestyle="--")
    if limits:
        ax.set_xlim(*limits)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return _save(fig, path, title)


def _win_rates(path: Path, pairs: list[tuple[str, dict]]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(pairs)))
    labels = [p.replace("_vs_", " vs ") for p, _ in pairs]
    left = [0.0] * len(pairs)
    for outcome, colour in OUTCOME_COLOURS:
        values = [v[outcome] or 0.0 for _, v in pairs]
        ax.barh(labels, values, left=left, color=colour, label=outcome)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of tasks (first model's win / tie / loss)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)  # above the bars, off the axis
    return _save(fig, path, "Win, tie and loss rates")


def _distribution(path: Path, analysis: Analysis) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    distribution = score_distribution(analysis)
    width = 0.8 / max(len(distribution), 1)
    for k, (model, counts) in enumerate(distribution.items()):
        ax.bar([s + k * width for s in analysis.scale], [counts[s] for s in analysis.scale], width=width, label=model)
    ax.set_xticks([s + 0.4 - width / 2 for s in analysis.scale], [str(s) for s in analysis.scale])
    ax.set_xlabel("score")
    ax.set_ylabel("scores given")
    ax.legend()
    return _save(fig, path, "Score distribution per model")


def _save(fig, path: Path, title: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return f"![{title}]({path.name})"
