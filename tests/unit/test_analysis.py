"""analyze on annotations with known truths, on none at all, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.artifacts import (
    ANNOTATIONS,
    EXECUTIONS,
    JUDGE_PAIRWISE,
    JUDGMENTS,
    SCORES,
    TASKS,
    read_table,
    write_table,
)
from llm_feedback.params import AnalyzeParams
from llm_feedback.plot_data import write_plot_data
from llm_feedback.report import write_metrics, write_reports
from llm_feedback.testing.synthetic_annotations import annotations_for, generations_for

IDS = [f"{i:016x}" for i in range(400)]
QUALITY = {"strong": 5.5, "middle": 4.0, "weak": 2.5}
BIAS = {"harsh": -1.0, "fair": 0.0, "lenient": 1.0}


@pytest.fixture(scope="module")
def result():
    return analyze(
        annotations=annotations_for(IDS, QUALITY, BIAS),
        generations=generations_for(IDS, list(QUALITY)),
        compare=list(QUALITY),
        params=AnalyzeParams(bootstrap=500),
        records=len(IDS),
    )


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
    for position, effect in result.metrics["position"]["effect"].items():
        assert effect["ci_low"] <= 0 <= effect["ci_high"], f"no built-in position bias, yet position {position}"
    leniency = {a: v["leniency"] for a, v in result.metrics["annotators"].items()}
    for annotator, offset in BIAS.items():
        assert leniency[annotator] == pytest.approx(offset, abs=0.15)
    assert not any(v["flagged"] for v in result.metrics["annotators"].values())
    differences = result.metrics["pairwise"]
    assert differences["strong_vs_middle"]["decided"] and differences["middle_vs_weak"]["decided"]
    assert differences["strong_vs_weak"]["difference"] == pytest.approx(
        models["strong"]["mean"] - models["weak"]["mean"], abs=1e-3
    )
    assert 0 < result.metrics["agreement"]["all"]["alpha"] < 1 and result.metrics["agreement"]["all"]["records"] == 400


def test_the_scores_artifact_holds_the_scores_behind_the_means(result, tmp_path: Path) -> None:
    write_table(result.scores_table(), tmp_path / "scores.parquet", SCORES)
    scores = read_table(tmp_path / "scores.parquet", SCORES).to_pandas()
    assert len(scores) == 1200 and set(scores["n"]) == {3}
    for model, means in result.metrics["models"].items():
        assert round(scores.loc[scores["model"] == model, "score"].mean(), 4) == means["mean"]
    ranking = ", ".join(f"{m} {result.metrics['models'][m]['mean']:.2f}" for m in ("strong", "middle", "weak"))
    assert result.line().startswith(f"ranking on 400 tasks: {ranking}; decided: strong beats middle by +")
    assert result.line().endswith("; 400 of 400 tasks scored") and result.metrics["verdict"] in result.line()


def test_scores_of_regenerated_answers_are_stale_and_left_out() -> None:
    ids = IDS[:20]
    generations = generations_for(ids, ["a", "b"])
    responses = generations.column("response").to_pylist()
    responses[0] = "a new answer"  # task 0, model a was regenerated after annotation
    generations = generations.set_column(2, "response", [responses])
    result = analyze(
        annotations=annotations_for(ids, {"a": 5, "b": 3}, {"x": 0, "y": 0}),
        generations=generations,
        compare=["a", "b"],
        params=AnalyzeParams(bootstrap=100),
    )
    counts = result.metrics["counts"]
    assert counts["stale_scores"] == 2 and counts["complete_tasks"] == 19
    assert counts["incomplete_tasks"] == {"stale": 1, "unscored": 0}
    assert result.metrics["models"]["a"]["tasks"] == 19 and result.metrics["models"]["b"]["tasks"] == 19
    assert result.metrics["pairwise"]["a_vs_b"]["tasks"] == 19, "the verdict is on the tasks both models have"
    assert "1 tasks left out: an answer changed after it was rated" in result.line()


def test_no_annotations_give_zero_counts_and_nulls_never_nan(tmp_path: Path) -> None:
    ids = IDS[:5]
    result = analyze(
        annotations=ANNOTATIONS.schema.empty_table(),
        generations=generations_for(ids, ["a", "b"]),
        compare=["a", "b"],
        params=AnalyzeParams(bootstrap=100),
        records=5,
    )
    metrics = result.metrics
    assert metrics["counts"] == {
        "tasks": 5,
        "records": 5,
        "annotated_records": 0,
        "scored_tasks": 0,
        "responses": {"submitted": 0, "draft": 0, "discarded": 0},
        "stale_scores": 0,
        "complete_tasks": 0,
        "incomplete_tasks": {"stale": 0, "unscored": 0},
        "excluded_annotators": [],
        "invalid_responses": 0,
        "duplicate_responses": 0,
    }
    assert metrics["models"]["a"] == {
        "mean": None,
        "ci_low": None,
        "ci_high": None,
        "position_corrected": None,
        "tasks": 0,
        "scores": 0,
    }
    pair = metrics["pairwise"]["a_vs_b"]
    assert pair["win"] is None and pair["difference"] is None and not pair["decided"]
    assert metrics["bradley_terry"] is None
    assert SCORES.validate(result.scores_table(), "scores").num_rows == 0
    assert result.line() == "no verdict yet: no task has current scores for every compared model; 0 of 5 tasks scored"
    write_metrics(metrics, tmp_path / "metrics.json")
    assert "NaN" not in (tmp_path / "metrics.json").read_text()
    tasks = TASKS.validate(
        pa.table({"task_id": ids, "instruction": ["x"] * 5, "source": ["s"] * 5, "source_row": list(range(5))}), "tasks"
    )
    write_reports(
        result,
        tmp_path / "reports",
        tasks=tasks,
        generations=generations_for(ids, ["a", "b"]),
        lowest=5,
        how_to_annotate="Start with annotators add.",
    )
    report = (tmp_path / "reports/report.md").read_text()
    assert "No submitted scores yet.** Start with annotators add." in report
    assert not list((tmp_path / "reports").glob("*.png"))


def test_judge_and_execution_agreement_with_humans() -> None:
    ids = IDS[:60]
    annotations = annotations_for(ids, {"a": 5.5, "b": 2.5}, {"x": 0, "y": 0}, noise=0.3)
    human = {(t, m): s for t, m, s in zip(*(annotations.column(c).to_pylist() for c in ("task_id", "model", "score")))}
    judgments = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "judge": "j",
                "score": s,
                "rationale": None,
                "error": None,
                "answer": None,
                "request_hash": "h",
            }
            for (t, m), s in human.items()
        ],
        schema=JUDGMENTS.schema,
    )
    executions = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "status": "pass" if m == "a" else "fail",
                "tests_passed": None,
                "tests_total": None,
                "duration_s": 0.1,
                "stderr_tail": None,
                "run_hash": "h",
            }
            for t in ids
            for m in ("a", "b")
        ],
        schema=EXECUTIONS.schema,
    )
    pairwise = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model_a": "a",
                "model_b": "b",
                "judge": "j",
                "a_first": "a",
                "b_first": "a" if k % 4 else "b",
                "verdict": "a" if k % 4 else "tie",
                "error": None,
            }
            for k, t in enumerate(ids)
        ],
        schema=JUDGE_PAIRWISE.schema,
    )
    result = analyze(
        annotations=annotations,
        generations=generations_for(ids, ["a", "b"]),
        compare=["a", "b"],
        params=AnalyzeParams(bootstrap=100),
        judgments=judgments,
        executions=executions,
        judge_pairwise=pairwise,
    )
    judge = result.metrics["judge"]
    assert judge["pairwise"]["a_vs_b"] == {"pairs": 60, "win": 0.75, "tie": 0.25, "loss": 0.0, "consistent": 0.75}
    assert judge["pairs"] == 120 and judge["spearman"] > 0.8 and judge["kappa_quadratic"] > 0.8
    execution = result.metrics["execution"]
    assert execution["models"]["a"]["pass_rate"] == 1.0 and execution["models"]["b"]["pass_rate"] == 0.0
    assert execution["correlation_with_human"] > 0.8


def test_reports_and_plot_data_are_written(result, tmp_path: Path) -> None:
    tasks = TASKS.validate(
        pa.table(
            {
                "task_id": IDS,
                "instruction": [f"Write f{i}" for i in range(400)],
                "source": ["s"] * 400,
                "source_row": list(range(400)),
            }
        ),
        "tasks",
    )
    write_reports(
        result,
        tmp_path / "reports",
        tasks=tasks,
        generations=generations_for(IDS, list(QUALITY)),
        lowest=3,
        how_to_annotate="unused",
    )
    write_plot_data(result, tmp_path / "plots")
    report = (tmp_path / "reports/report.md").read_text()
    for name in ("differences.png", "mean_scores.png", "score_distribution.png", "win_rates.png"):
        assert f"]({name})" in report and (tmp_path / "reports" / name).read_bytes()[:4] == b"\x89PNG"
    assert report.splitlines()[2] == f"**{result.metrics['verdict']}**", "the verdict comes first"
    assert report.index("](differences.png)") < report.index("](mean_scores.png)")
    assert "| strong | 5." in report and "Bradley-Terry" in report and "| strong - weak | +2." in report
    lowest = (tmp_path / "reports/lowest.md").read_text()
    assert lowest.count("\n## ") == 3 and "weak on task" in lowest
    assert json.loads(json.dumps(result.metrics)) == result.metrics


def response_rows(table: pa.Table, record: str, annotator: str) -> list[dict]:
    return [r for r in table.to_pylist() if r["record_id"] == record and r["annotator"] == annotator]


def spoiled(rows: list[dict], annotator: str, position: int = 1, minutes: int = 0, **change: object) -> list[dict]:
    from datetime import timedelta

    return [
        {
            **r,
            "annotator": annotator,
            "updated_at": r["updated_at"] + timedelta(minutes=minutes),
            **(change if r["position"] == position else {k: v for k, v in change.items() if k != "score"}),
        }
        for r in rows
    ]


def test_values_outside_the_settings_and_repeats_never_reach_the_metrics() -> None:
    ids = IDS[:30]
    clean = annotations_for(ids, {"a": 5, "b": 3}, {"x": 0, "y": 0}, seed=1)
    generations = generations_for(ids, ["a", "b"])
    bad = [
        spoiled(response_rows(clean, ids[0], "x"), "z", score=1_000_000),
        spoiled(response_rows(clean, ids[1], "x"), "z", position=2, score=-1),
        spoiled(response_rows(clean, ids[2], "x"), "z", score=9),
        spoiled(response_rows(clean, ids[3], "x"), "z", status="pending"),
        spoiled(response_rows(clean, ids[4], "x"), "z", to_correct="zzz"),
        spoiled(response_rows(clean, ids[5], "x"), "z", score=None, problem="score_response_1 is '7', not a score"),
        spoiled(response_rows(clean, ids[6], "x"), "x", minutes=5),  # the same annotator's response a second time
    ]
    dirty = pa.Table.from_pylist(clean.to_pylist() + [r for rows in bad for r in rows], schema=ANNOTATIONS.schema)
    expected = analyze(
        annotations=clean, generations=generations, compare=["a", "b"], params=AnalyzeParams(bootstrap=200)
    ).metrics
    result = analyze(
        annotations=ANNOTATIONS.validate(dirty, "dirty"),
        generations=generations,
        compare=["a", "b"],
        params=AnalyzeParams(bootstrap=200),
    )
    got = result.metrics
    assert got["models"] == expected["models"] and got["pairwise"] == expected["pairwise"]
    assert got["annotators"] == expected["annotators"] and got["agreement"] == expected["agreement"]
    assert got["corrections"] == expected["corrections"] and got["position"] == expected["position"]
    assert got["counts"] == {**expected["counts"], "invalid_responses": 6, "duplicate_responses": 1}
    assert set(result.submitted["score"]) <= set(range(8))
    assert result.line().endswith(f"; {result.left_out.line()}")
    assert result.left_out.line() == (
        f"6 responses left out for a value outside the dataset's settings (first: record {ids[0]} by z: "
        f"score 1000000 for model {response_rows(clean, ids[0], 'x')[0]['model']} is not on the 0-7 scale); "
        "1 repeated responses of an "
        "annotator on a record left out (the latest counts)"
    )


def test_an_annotator_answering_a_record_twice_counts_once_with_the_latest() -> None:
    ids = IDS[:4]
    clean = annotations_for(ids, {"a": 5, "b": 3}, {"x": 0}, noise=0.0)
    again = spoiled(response_rows(clean, ids[0], "x"), "x", position=1, minutes=1, score=0)
    twice = pa.Table.from_pylist(clean.to_pylist() + again, schema=ANNOTATIONS.schema)
    result = analyze(
        annotations=twice,
        generations=generations_for(ids, ["a", "b"]),
        compare=["a", "b"],
        params=AnalyzeParams(bootstrap=100),
    )
    scores = result.scores.set_index(["task_id", "model"])
    first_model = again[0]["model"]
    assert scores.loc[(ids[0], first_model), "score"] == 0 and scores.loc[(ids[0], first_model), "n"] == 1
    assert result.metrics["counts"]["duplicate_responses"] == 1
    assert result.metrics["counts"]["responses"]["submitted"] == 4
