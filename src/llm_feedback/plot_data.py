"""The small CSV files under plots/ that `dvc plots show` draws (the chart definitions are in dvc.yaml's analyze
stage, their Vega-Lite templates in .dvc/plots/)."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from llm_feedback.analysis import Analysis
from llm_feedback.artifacts import atomic_folder


def write_plot_data(analysis: Analysis, folder: Path) -> None:
    """plots/: differences.csv, mean_scores.csv, win_rates.csv and score_distribution.csv, replaced together.

    An estimate that has no value yet (no scores) gets no row: Vega would draw an empty field as 0."""
    metrics = analysis.metrics
    pairs = [(a, b, metrics["pairwise"][f"{a}_vs_{b}"]) for a, b in itertools.combinations(analysis.models, 2)]
    with atomic_folder(folder) as staging:
        _csv(
            staging / "differences.csv",
            ["pair", "difference", "ci_low", "ci_high"],
            [
                [f"{a} - {b}", v["difference"], v["ci_low"], v["ci_high"]]
                for a, b, v in pairs
                if v["difference"] is not None
            ],
        )
        _csv(
            staging / "mean_scores.csv",
            ["model", "mean", "ci_low", "ci_high"],
            [[m, v["mean"], v["ci_low"], v["ci_high"]] for m, v in metrics["models"].items() if v["mean"] is not None],
        )
        _csv(
            staging / "win_rates.csv",
            ["pair", "outcome", "rate"],
            [[f"{a} vs {b}", o, v[o]] for a, b, v in pairs for o in ("win", "tie", "loss") if v[o] is not None],
        )
        _csv(
            staging / "score_distribution.csv",
            ["model", "score", "count"],
            [[m, s, n] for m, counts in score_distribution(analysis).items() for s, n in counts.items()],
        )


def score_distribution(analysis: Analysis) -> dict[str, dict[int, int]]:
    """How often each model got each score (every submitted score, not the per-task aggregate)."""
    counts = analysis.submitted.groupby(["model", "score"]).size()
    return {m: {s: int(counts.get((m, float(s)), 0)) for s in analysis.scale} for m in analysis.models}


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
