"""The CSV files `dvc plots` draws hold what metrics.json says, in compare order, one row per pair, model and score."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.compute as pc
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.params import AnalyzeParams
from llm_feedback.plot_data import write_plot_data
from llm_feedback.testing.synthetic_annotations import annotations_for, generations_for

IDS = [f"{i:016x}" for i in range(120)]
QUALITY = {"strong": 5.0, "middle": 4.0, "weak": 3.0}
PAIRS = [("strong", "middle"), ("strong", "weak"), ("middle", "weak")]


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory):
    annotations = annotations_for(IDS, QUALITY, {"a": 0.0, "b": 0.5})
    result = analyze(
        annotations=annotations,
        generations=generations_for(IDS, list(QUALITY)),
        compare=list(QUALITY),
        params=AnalyzeParams(bootstrap=200),
        records=len(IDS),
    )
    folder = tmp_path_factory.mktemp("plots") / "plots"
    write_plot_data(result, folder)
    return result, folder


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_differences_are_the_paired_differences_in_metrics(plots) -> None:
    result, folder = plots
    rows = read(folder / "differences.csv")
    assert [r["pair"] for r in rows] == [f"{a} - {b}" for a, b in PAIRS]
    per_task = result.scores.pivot(index="task_id", columns="model", values="score")
    for row, (a, b) in zip(rows, PAIRS):
        entry = result.metrics["pairwise"][f"{a}_vs_{b}"]
        assert [float(row[k]) for k in ("difference", "ci_low", "ci_high")] == [
            entry["difference"],
            entry["ci_low"],
            entry["ci_high"],
        ]
        assert float(row["difference"]) == pytest.approx((per_task[a] - per_task[b]).mean(), abs=1e-4)
        assert float(row["ci_low"]) < float(row["difference"]) < float(row["ci_high"])


def test_win_rates_and_the_score_distribution_name_pairs_and_models(plots) -> None:
    result, folder = plots
    rates = read(folder / "win_rates.csv")
    assert [(r["pair"], r["outcome"]) for r in rates] == [
        (f"{a} vs {b}", o) for a, b in PAIRS for o in ("win", "tie", "loss")
    ]
    for row in rates:
        a, b = row["pair"].split(" vs ")
        assert float(row["rate"]) == result.metrics["pairwise"][f"{a}_vs_{b}"][row["outcome"]]
    distribution = read(folder / "score_distribution.csv")
    assert [(r["model"], r["score"]) for r in distribution] == [(m, str(s)) for m in QUALITY for s in range(8)]
    given = result.submitted.groupby("model").size()
    for model in QUALITY:
        assert sum(int(r["count"]) for r in distribution if r["model"] == model) == given[model] == 2 * len(IDS)
    assert not (folder / "score_distribution").exists()


def test_estimates_without_a_value_get_no_row(tmp_path: Path) -> None:
    """A model nobody scored leaves no complete task: no mean, difference or rate to draw, only zero counts."""
    annotations = annotations_for(IDS[:30], QUALITY, {"a": 0.0})
    unscored = annotations.filter(pc.not_equal(annotations["model"], "weak"))
    result = analyze(
        annotations=unscored,
        generations=generations_for(IDS[:30], list(QUALITY)),
        compare=list(QUALITY),
        params=AnalyzeParams(bootstrap=100),
    )
    assert result.metrics["models"]["weak"]["mean"] is None
    write_plot_data(result, tmp_path / "plots")
    for name in ("differences.csv", "mean_scores.csv", "win_rates.csv"):
        assert all("" not in row.values() for row in read(tmp_path / "plots" / name)), name
    assert read(tmp_path / "plots/differences.csv") == []
    given = {model: 0 for model in QUALITY}
    for row in read(tmp_path / "plots/score_distribution.csv"):
        given[row["model"]] += int(row["count"])
    assert given == {"strong": 30, "middle": 30, "weak": 0}
