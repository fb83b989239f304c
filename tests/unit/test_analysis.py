"""analyze on annotations with known truths, on none at all, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.artifacts import ANNOTATIONS, EXECUTIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS
from llm_feedback.params import AnalyzeParams
from llm_feedback.report import write_metrics, write_plot_data, write_reports
from tests.synthetic_annotations import annotations_for, generations_for

IDS = [f"{i:016x}" for i in range(400)]
QUALITY = {"strong": 5.5, "middle": 4.0, "weak": 2.5}
BIAS = {"harsh": -1.0, "fair": 0.0, "lenient": 1.0}


@pytest.fixture(scope="module")
def result():
    return analyze(annotations_for(IDS, QUALITY, BIAS), generations_for(IDS, list(QUALITY)), list(QUALITY),
                   AnalyzeParams(bootstrap=500), records=len(IDS))


def test_the_true_order_and_the_annotators_biases_are_found(result) -> None:
    models = result.metrics["models"]
    for name, quality in QUALITY.items():
        assert models[name]["ci_low"] < models[name]["mean"] < models[name]["ci_high"]
        assert abs(models[name]["mean"] - quality) < 0.3
        assert models[name]["tasks"] == 400 and models[name]["scores"] == 1200
    assert [m for m, _ in result.ranking()] == ["strong", "middle", "weak"]
    assert models["strong"]["ci_low"] > models["middle"]["ci_high"], "well separated models do not overlap"
    ratings = result.metrics["bradley_terry"]
    assert ratings["strong"]["rating"] > ratings["middle"]["rating"] > ratings["weak"]["rating"]
    pair = result.metrics["pairwise"]["strong_vs_weak"]
    assert pair["win"] > 0.9 and pair["win"] + pair["tie"] + pair["loss"] == pytest.approx(1.0, abs=1e-3)
    means = {a: v["mean_score"] for a, v in result.metrics["annotators"].items()}
    assert means["harsh"] < means["fair"] < means["lenient"]
    positions = result.metrics["position"]
    assert abs(positions["1"]["mean_score"] - positions["3"]["mean_score"]) < 0.3, "no built-in position bias"
    assert 0 < result.metrics["agreement"]["all"]["alpha"] < 1 and result.metrics["agreement"]["all"]["records"] == 400


def test_scores_of_regenerated_answers_are_stale_and_left_out() -> None:
    ids = IDS[:20]
    generations = generations_for(ids, ["a", "b"])
    responses = generations.column("response").to_pylist()
    responses[0] = "a new answer"  # task 0, model a was regenerated after annotation
    generations = generations.set_column(2, "response", [responses])
    result = analyze(annotations_for(ids, {"a": 5, "b": 3}, {"x": 0, "y": 0}), generations, ["a", "b"],
                     AnalyzeParams(bootstrap=100))
    assert result.metrics["counts"]["stale_scores"] == 2
    assert result.metrics["models"]["a"]["tasks"] == 19 and result.metrics["models"]["b"]["tasks"] == 20


def test_no_annotations_give_zero_counts_and_nulls_never_nan(tmp_path: Path) -> None:
    ids = IDS[:5]
    result = analyze(ANNOTATIONS.schema.empty_table(), generations_for(ids, ["a", "b"]), ["a", "b"],
                     AnalyzeParams(bootstrap=100), records=5)
    metrics = result.metrics
    assert metrics["counts"] == {"tasks": 5, "records": 5, "annotated_records": 0, "scored_tasks": 0,
                                 "responses": {"submitted": 0, "draft": 0, "discarded": 0}, "stale_scores": 0}
    assert metrics["models"]["a"] == {"mean": None, "ci_low": None, "ci_high": None, "tasks": 0, "scores": 0}
    assert metrics["pairwise"]["a_vs_b"]["win"] is None and metrics["bradley_terry"] is None
    write_metrics(metrics, tmp_path / "metrics.json")
    assert "NaN" not in (tmp_path / "metrics.json").read_text()
    tasks = TASKS.validate(pa.table({"task_id": ids, "instruction": ["x"] * 5, "source": ["s"] * 5,
                                     "source_row": list(range(5))}), "tasks")
    write_reports(result, tasks, generations_for(ids, ["a", "b"]), tmp_path / "reports", 5, "Start with annotators add.")
    report = (tmp_path / "reports/report.md").read_text()
    assert "No submitted scores yet.** Start with annotators add." in report
    assert not list((tmp_path / "reports").glob("*.png"))


def test_judge_and_execution_agreement_with_humans() -> None:
    ids = IDS[:60]
    annotations = annotations_for(ids, {"a": 5.5, "b": 2.5}, {"x": 0, "y": 0}, noise=0.3)
    human = {(t, m): s for t, m, s in zip(*(annotations.column(c).to_pylist() for c in ("task_id", "model", "score")))}
    judgments = pa.Table.from_pylist(
        [{"task_id": t, "model": m, "judge": "j", "score": s, "rationale": None, "error": None, "answer": None, "request_hash": "h"}
         for (t, m), s in human.items()], schema=JUDGMENTS.schema)
    executions = pa.Table.from_pylist(
        [{"task_id": t, "model": m, "status": "pass" if m == "a" else "fail", "tests_passed": None, "tests_total": None,
          "duration_s": 0.1, "stderr_tail": None, "run_hash": "h"} for t in ids for m in ("a", "b")], schema=EXECUTIONS.schema)
    pairwise = pa.Table.from_pylist(
        [{"task_id": t, "model_a": "a", "model_b": "b", "judge": "j", "a_first": "a", "b_first": "a" if k % 4 else "b",
          "verdict": "a" if k % 4 else "tie", "error": None} for k, t in enumerate(ids)], schema=JUDGE_PAIRWISE.schema)
    result = analyze(annotations, generations_for(ids, ["a", "b"]), ["a", "b"], AnalyzeParams(bootstrap=100),
                     judgments=judgments, executions=executions, judge_pairwise=pairwise)
    judge = result.metrics["judge"]
    assert judge["pairwise"]["a_vs_b"] == {"pairs": 60, "win": 0.75, "tie": 0.25, "loss": 0.0, "consistent": 0.75}
    assert judge["pairs"] == 120 and judge["spearman"] > 0.8 and judge["kappa_quadratic"] > 0.8
    execution = result.metrics["execution"]
    assert execution["models"]["a"]["pass_rate"] == 1.0 and execution["models"]["b"]["pass_rate"] == 0.0
    assert execution["correlation_with_human"] > 0.8


def test_reports_and_plot_data_are_written(result, tmp_path: Path) -> None:
    tasks = TASKS.validate(pa.table({"task_id": IDS, "instruction": [f"Write f{i}" for i in range(400)],
                                     "source": ["s"] * 400, "source_row": list(range(400))}), "tasks")
    write_reports(result, tasks, generations_for(IDS, list(QUALITY)), tmp_path / "reports", 3, "unused")
    write_plot_data(result, tmp_path / "plots")
    report = (tmp_path / "reports/report.md").read_text()
    for name in ("mean_scores.png", "score_distribution.png", "win_rates.png"):
        assert f"]({name})" in report and (tmp_path / "reports" / name).read_bytes()[:4] == b"\x89PNG"
    assert "| strong | 5." in report and "Bradley-Terry" in report
    lowest = (tmp_path / "reports/lowest.md").read_text()
    assert lowest.count("\n## ") == 3 and "weak on task" in lowest
    distribution = (tmp_path / "plots/score_distribution/strong.csv").read_text().splitlines()
    assert distribution[0] == "score,count" and sum(int(line.split(",")[1]) for line in distribution[1:]) == 1200
    assert json.loads(json.dumps(result.metrics)) == result.metrics
