"""Reading a judge's verdict: usable ones are taken, anything else is an error with a reason, never a guess."""

from __future__ import annotations

import pytest

from llm_feedback.judge_replies import parse_preference, parse_verdict
from llm_feedback.params import RubricParams

GOOD = '{"comments_and_docstrings": 2, "test_example": 1, "runs_correctly": 3, "total": 6, "rationale": "Solid."}'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"Here is my assessment.\n{GOOD}\nThanks!",
    ],
)
def test_well_formed_verdicts_are_read(text: str) -> None:
    verdict = parse_verdict(text, RubricParams())
    assert (verdict.score, verdict.rationale, verdict.error) == (6, "Solid.", None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I can't evaluate code.", "no JSON object in the judge's answer: \"I can't evaluate code.\""),
        ("", "an empty answer"),
        (None, "no answer"),
        (
            '{"comments_and_docstrings": 2, "test_example": 1, "runs_correctly": 3, "total": 7}',
            "total 7 is not the sum of the criteria (6)",
        ),
        (
            '{"comments_and_docstrings": 3, "test_example": 1, "runs_correctly": 3, "total": 7}',
            "comments_and_docstrings must be one of 0, 1, 2, got 3",
        ),
        (
            '{"comments_and_docstrings": 2, "test_example": 1, "runs_correctly": 2, "total": 5}',
            "runs_correctly must be one of 0, 3, got 2",
        ),
        (
            '{"comments_and_docstrings": true, "test_example": 1, "runs_correctly": 3, "total": 5}',
            "comments_and_docstrings must be one of 0, 1, 2, got True",
        ),
        ('{"score": 6', "no JSON object in the judge's answer"),
        ('{"rationale": ' + "[" * 100_000, "no JSON object in the judge's answer"),
    ],
)
def test_unusable_answers_are_errors_with_the_reason(text: str | None, reason: str) -> None:
    verdict = parse_verdict(text, RubricParams())
    assert verdict.score is None and verdict.error is not None and verdict.error.startswith(reason)


def test_pairwise_preferences() -> None:
    assert parse_preference('{"better": "B", "rationale": "tests"}') == ("B", None)
    assert parse_preference('{"better": "tie", "rationale": ""}') == ("tie", None)
    assert parse_preference('{"better": "first"}') == (None, "better must be A, B or tie, got 'first'")
