"""A declared rubric (params.yaml's `rubric:`) and everything that follows it: the checks on the declaration, the
plain-text tooltip, the rating questions (a total, or one per criterion), the judge's JSON shape, prompt and
parsing, pull's reading of criteria and preferences, and analyze's scale."""

from __future__ import annotations

import pytest
import yaml

from llm_feedback.analysis import usable_annotations
from llm_feedback.annotation.dataset_settings import PREFERENCE_QUESTION, DatasetSpec
from llm_feedback.annotation.pull import Answer, Asked
from llm_feedback.annotation.values import rating_scale
from llm_feedback.errors import ConfigError
from llm_feedback.judge import score_prompt, verdict_schema
from llm_feedback.judge_replies import parse_verdict
from llm_feedback.params import AnnotationParams, RubricParams, load_params
from llm_feedback.rubric import full_text, tooltip
from tests.conftest import PROJECT_ROOT
from tests.unit.test_preferences import rows_of

LIKERT = RubricParams(low=1, high=5, intro="How helpful is the answer?", criteria=[], note="1 useless, 5 perfect.")
LIKERT_YAML = {"low": 1, "high": 5, "criteria": []}
MODELS = {"a": {"backend": "openai", "model": "a", "base_url": "http://127.0.0.1:9/v1"}}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"rubric": {"low": 3, "high": 2, "criteria": []}}, "low (3) must be below high (2)"),
        ({"rubric": {"high": 11}}, "less than or equal to 10"),
        ({"rubric": {"high": 8}}, "criteria: their points add up to 0-7, not the scale 0-8"),
        (
            {"rubric": {"criteria": [{"name": "x", "title": "X", "points": [2, 1]}], "high": 2}},
            "points: [2, 1] must rise",
        ),
        (
            {"rubric": {"criteria": [{"name": "x", "title": "X", "points": [0, 1]}] * 2, "high": 2}},
            "two criteria share a name",
        ),
        (
            {"rubric": LIKERT_YAML, "analyze": {"min_difference": 5.0}, "export": {"sft_min_score": 4.0}},
            "min_difference: 5.0",
        ),
        ({"rubric": LIKERT_YAML, "export": {"sft_min_score": 6.0}}, "sft_min_score: 6.0"),
        (
            {"rubric": LIKERT_YAML, "annotation": {"rubric": "criteria"}, "export": {"sft_min_score": 4.0}},
            "rubric.criteria is",
        ),
    ],
)
def test_a_rubric_that_does_not_add_up_is_refused_naming_the_key(tmp_path, sections: dict, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS, "compare": ["a"], **sections}))
    with pytest.raises(ConfigError) as refused:
        load_params(path)
    line = str(refused.value)
    assert message in line and "\n" not in line, line
    assert line.startswith(f"{path}: "), line


def test_the_shipped_params_declare_the_default_code_rubric() -> None:
    assert load_params(PROJECT_ROOT / "params.yaml").rubric == RubricParams()


def test_the_tooltip_and_the_judge_s_rubric_are_plain_text() -> None:
    short, full = tooltip(RubricParams()), full_text(RubricParams())
    assert short.splitlines()[0] == (
        "Start at 0 and add up the points (0 to 7): Comments and docstring 0, 1 or 2; Test example 0, 1 or 2; "
        "Runs correctly 0 or 3."
    )
    assert "Runs correctly (0 or 3): +3 (worth the most)" in full
    for text in (short, full, tooltip(LIKERT)):
        assert "**" not in text and "`" not in text and not any(line.startswith(("-", "#")) for line in text.split())
    assert tooltip(LIKERT) == "How helpful is the answer? (1 to 5).\n1 useless, 5 perfect."


def test_a_likert_judge_gives_one_total_on_its_scale() -> None:
    schema = verdict_schema(LIKERT)
    assert schema["required"] == ["total", "rationale"]
    assert schema["properties"]["total"] == {"type": "integer", "minimum": 1, "maximum": 5}
    prompt = score_prompt(LIKERT, "Summarise this.", "A summary.")
    assert "Give the answer one total score from 1 to 5." in prompt and "1 useless, 5 perfect." in prompt
    assert parse_verdict('{"total": 4, "rationale": "ok"}', LIKERT).score == 4
    assert (
        parse_verdict('{"total": 6, "rationale": "ok"}', LIKERT).error == "total must be an integer from 1 to 5, got 6"
    )
    code = parse_verdict(
        '{"comments_and_docstrings": 2, "test_example": 0, "runs_correctly": 3, "total": 5}', RubricParams()
    )
    assert code.score == 5 and code.error is None


def spec(declared: RubricParams, **annotation) -> DatasetSpec:
    settings = AnnotationParams(guidelines=PROJECT_ROOT / "annotation/guidelines.md", **annotation)
    return DatasetSpec.from_params(settings, rubric=declared, responses=2, with_executions=False)


def test_the_questions_follow_the_rubric_a_total_or_each_criterion_and_the_preference() -> None:
    likert = spec(LIKERT).structure()["questions"]
    assert likert[0] == ["score_response_1", "rating", True, [1, 2, 3, 4, 5]]
    criteria = spec(RubricParams(), rubric="criteria", preference=True).structure()["questions"]
    names = [q[0] for q in criteria]
    assert names[:7] == [
        "comments_and_docstrings_response_1",
        "test_example_response_1",
        "runs_correctly_response_1",
        "comments_and_docstrings_response_2",
        "test_example_response_2",
        "runs_correctly_response_2",
        PREFERENCE_QUESTION,
    ]
    assert criteria[2][3] == [0, 3] and criteria[6][3] == ["response_1", "response_2", "tie"]
    assert spec(RubricParams()).settings_hash() != spec(RubricParams(), preference=True).settings_hash()


def answer(values: dict, status: str = "submitted") -> dict:
    return {"status": status, "values": {name: {"value": value} for name, value in values.items()}}


def test_pull_adds_the_criteria_up_and_reads_the_preference() -> None:
    asked = Asked(responses=2, scale=range(0, 8), criteria=(("c", (0, 1, 2)), ("r", (0, 3))), preference=True)
    read = Answer.read(
        answer({"c_response_1": 2, "r_response_1": 3, "c_response_2": 1, "r_response_2": 0, "preference": "tie"}),
        asked,
    )
    assert (read.scores, read.preferred, read.problem) == ([5, 1], "tie", None)
    partial = Answer.read(answer({"c_response_1": 2}, status="draft"), asked)
    assert partial.scores == [None, None] and partial.problem is None, "a draft with a criterion left: no total yet"
    wrong = Answer.read(answer({"c_response_1": 2, "r_response_1": 2, "preference": "response_3"}), asked)
    assert wrong.scores[0] is None
    assert wrong.problem == "r_response_1 is 2, not one of 0, 3 points; preference is 'response_3', not one of " + (
        "response_1, response_2, tie"
    )


def test_analyze_takes_the_rubric_s_scale() -> None:
    rows = rows_of([("t1", "x", ["a", "b"], None)])
    rows["score"], rows["response_sha"], rows["corrected_response"], rows["comments"] = 5, "s", None, None
    kept, _ = usable_annotations(rows, scale=rating_scale(LIKERT))
    assert len(kept) == 2
    rows["score"] = 0
    kept, left_out = usable_annotations(rows, scale=rating_scale(LIKERT))
    assert kept.empty and "score 0 for model a is not on the 1-5 scale" in left_out.first
