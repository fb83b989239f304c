"""Answers normalised for display, against the real embedded server: annotators get the normalised text, their scores
come back as scores of the current answers (not stale), and pushing again changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_feedback.analysis import current_scores
from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.artifacts import text_sha
from llm_feedback.presentation import normalise
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.generations import answered
from tests.integration.annotation.annotating import Annotator, make_tasks, params_for
from tests.integration.annotation.conftest import RunningServer

MODELS = ["alpha", "beta"]


def untagged(model: str, task_id: str) -> str:
    """An answer fenced the way some models fence: untagged Python, an untagged shell line, a ~~~ fence."""
    return (
        f"Here you go:\n\n```\n# written by {model}\ndef f():\n    return '{task_id}'\n```\n\n"
        f"Run it with:\n\n```\npython main.py\n```\n\n~~~Python3\nprint(f())\n~~~\n"
    )


@pytest.fixture
def hosted(argilla_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    return argilla_server


def test_annotators_rate_the_normalised_text_and_their_scores_stay_current(
    hosted: RunningServer, tmp_path: Path
) -> None:
    params = params_for(hosted.url, "normalised-answers", MODELS)
    tasks = make_tasks(3)
    answers = {(t, m): untagged(m, t) for t in tasks.column("task_id").to_pylist() for m in MODELS}
    generations = answered(answers)
    first = push(params, tasks=tasks, generations=generations)
    assert first.created == 3

    records = owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)
    on_server = json.dumps([r["fields"] for r in records])
    shown = {normalise(answer) for answer in answers.values()}
    assert all(json.dumps(text)[1:-1] in on_server for text in shown), "annotators get the normalised text"
    assert not any(json.dumps(answer)[1:-1] in on_server for answer in answers.values())

    added = add_annotators(
        resolve(params.argilla), workspace=params.annotation.workspace, usernames=["ann-n"], store=tmp_path / "a.json"
    )
    person = Annotator(hosted.url, "ann-n", json.loads((tmp_path / "a.json").read_text())[hosted.url]["ann-n"])
    assert [a.username for a in added] == ["ann-n"]
    for record in records:
        person.respond(record["id"], "submitted", {"score_response_1": 5, "score_response_2": 2})

    pulled = pull(params, receipt=first.receipt).table.to_pandas()
    assert set(pulled["response_sha"]) == {text_sha(text) for text in shown}
    current, stale = current_scores(pulled, generations)
    assert (len(current), len(stale)) == (6, 0), "a score of the normalised text is a score of the current answer"

    again = push(params, tasks=tasks, generations=generations, previous=first.receipt)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
