"""The small CSV files under plots/ that `dvc plots show` draws (the chart definitions are in dvc.yaml)."""

from __future__ import annotations

import csv
from pathlib import Path

from llm_feedback.analysis import Analysis
from llm_feedback.annotation.values import SCALE
from llm_feedback.artifacts import atomic_folder


def write_plot_data(analysis: Analysis, folder: Path) -> None:
    """plots/: mean_scores.csv, win_rates.csv and score_distribution/<model>.csv, for `dvc plots show`."""
    metrics = analysis.metrics
    with atomic_folder(folder) as staging:
        (staging / "score_distribution").mkdir()
        _csv(
            staging / "mean_scores.csv",
            ["model", "mean", "ci_low", "ci_high"],
            [[m, v["mean"], v["ci_low"], v["ci_high"]] for m, v in metrics["models"].items()],
        )
        _csv(
            staging / "win_rates.csv",
            ["pair_outcome", "rate"],
            [
                [f"{pair.replace('_vs_', ' vs ')}: {o}", v[o]]
                for pair, v in metrics["pairwise"].items()
                for o in ("win", "tie", "loss")
            ],
        )
        for model, counts in score_distribution(analysis).items():
            _csv(staging / "score_distribution" / f"{model}.csv", ["score", "count"], [[s, counts[s]] for s in SCALE])


def score_distribution(analysis: Analysis) -> dict[str, dict[int, int]]:
    """How often each model got each score (every submitted score, not the per-task aggregate)."""
    counts = analysis.submitted.groupby(["model", "score"]).size()
    return {m: {s: int(counts.get((m, float(s)), 0)) for s in SCALE} for m in analysis.models}


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
