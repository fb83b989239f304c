"""The parts of push and pull that need no server: blinding, assignment, settings comparison, receipt, connection."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llm_feedback.annotation.connection import Target, _sends_hf_token, resolve
from llm_feedback.annotation.dataset_settings import DatasetSpec, describe_structure_change
from llm_feedback.annotation.pull import _unblind
from llm_feedback.annotation.receipt import Receipt, read_receipt
from llm_feedback.annotation.records import annotator_group, blind_order, build_records
from llm_feedback.errors import ConfigError, InputError
from llm_feedback.params import AnnotationParams, ArgillaParams, Params
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import make_generations, make_tasks


def spec(responses: int = 2, **params) -> DatasetSpec:
    annotation = AnnotationParams(guidelines=PROJECT_ROOT / "annotation/guidelines.md",
                                  rating_tooltip=PROJECT_ROOT / "annotation/rating_tooltip.md", **params)
    return DatasetSpec.from_params(annotation, responses, with_executions=False)


def test_display_order_is_seeded_per_task_and_balanced() -> None:
    models = ["a", "b"]
    orders = [blind_order(42, f"task-{i}", models) for i in range(2000)]
    assert orders == [blind_order(42, f"task-{i}", models) for i in range(2000)], "stable across calls"
    first = Counter(order[0] for order in orders)
    assert 900 < first["a"] < 1100, f"each model is Response 1 about half the time: {first}"
    assert [blind_order(7, f"task-{i}", models) for i in range(50)] != orders[:50], "the seed matters"
    assert sorted(blind_order(1, "t", ["x", "y", "z"])) == ["x", "y", "z"]


def test_annotator_groups_are_seeded_and_spread() -> None:
    groups = ["group-1", "group-2", "group-3"]
    counts = Counter(annotator_group(42, f"task-{i}", groups) for i in range(3000))
    assert set(counts) == set(groups) and min(counts.values()) > 900
    assert annotator_group(42, "t", groups) == annotator_group(42, "t", groups)


def test_records_keep_known_orders_and_leave_out_unanswered_tasks() -> None:
    tasks = make_tasks(6)
    generations = make_generations(tasks, ["a", "b"])
    ids = tasks.column("task_id").to_pylist()
    response = generations.column("response").to_pylist()
    response[0] = None  # task 0, model a failed
    generations = generations.set_column(2, "response", [response])
    known = {ids[1]: ["b", "a"], ids[2]: ["a", "b"]}
    built = build_records(tasks, generations, ["a", "b"], spec(), seed=3, known_orders=known)
    assert built.missing_answers == 1 and [r.record_id for r in built.records] == ids[1:]
    by_id = {r.record_id: r for r in built.records}
    assert by_id[ids[1]].models == ("b", "a") and "written by b" in by_id[ids[1]].fields["response_1"]
    assert by_id[ids[2]].models == ("a", "b")
    assert all(r.metadata["annotator_group"] in ("group-1", "group-2") for r in built.records)
    overlap = build_records(tasks, generations, ["a", "b"], spec(assignment="overlap"), seed=3)
    assert all("annotator_group" not in r.metadata for r in overlap.records)


def test_structure_changes_are_named() -> None:
    two, three = spec(2).structure(), spec(3).structure()
    assert describe_structure_change(two, three) == (
        "new field response_3, new question score_response_3, question to_correct changed")
    assert spec(2).settings_hash() != spec(2, min_submitted=2).settings_hash()
    assert spec(2).structure() == spec(2, min_submitted=3).structure(), "min_submitted can change in place"


def test_labels_unblind_to_model_names() -> None:
    assert _unblind("response_2", ["x", "y"]) == "y"
    assert _unblind("neither", ["x", "y"]) == "neither" and _unblind(None, ["x"]) is None


def test_a_receipt_round_trips_and_a_broken_one_is_named(tmp_path: Path) -> None:
    receipt = Receipt(url="http://h", workspace="w", dataset="d", dataset_id="id", models=["a", "b"], records=1,
                      settings_hash="s", content_hash="c", blinding={"t": {"task_id": "t", "models": ["b", "a"]}})
    receipt.write(tmp_path / "push.json")
    assert read_receipt(tmp_path / "push.json") == receipt
    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "url": "x"}))
    with pytest.raises(InputError, match=r"bad.json: not a push receipt"):
        read_receipt(tmp_path / "bad.json")
    with pytest.raises(InputError, match="run the push stage first"):
        read_receipt(tmp_path / "missing.json")


def test_the_hf_token_goes_only_to_spaces_unless_asked() -> None:
    assert _sends_hf_token("https://me-argilla.hf.space", "auto")
    assert not _sends_hf_token("https://argilla.example.com", "auto")
    assert not _sends_hf_token("https://hf.space.evil.example", "auto")
    assert _sends_hf_token("http://127.0.0.1:1", "always") and not _sends_hf_token("https://x.hf.space", "never")


def test_hosted_params_need_a_key_and_a_clean_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="export ARGILLA_API_KEY"):
        resolve(ArgillaParams(url="https://argilla.example.com"))
    monkeypatch.setenv("ARGILLA_API_KEY", "secret-key-value")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    target = resolve(ArgillaParams(url="https://team-argilla.hf.space/"))
    assert target.url == "https://team-argilla.hf.space" and target.headers == {"Authorization": "Bearer hf_secret"}
    assert "secret" not in repr(target) and isinstance(target, Target)
    base = {"models": {"m": {"backend": "openai", "model": "m", "base_url": "http://x/v1"}}, "compare": ["m"]}
    for url, message in (("argilla.example.com", "must be 'local'"), ("https://user:pw@host", "must not carry credentials")):
        with pytest.raises(ValueError, match=message):
            Params.model_validate({**base, "argilla": {"url": url}})
    with pytest.raises(ValueError, match="force only applies with recreate"):
        Params.model_validate({**base, "annotation": {"force": True}})


RECEIPT = {"url": "http://h", "workspace": "w", "dataset": "d", "dataset_id": "id", "models": ["a", "b"], "records": 2,
           "settings_hash": "s", "content_hash": "c", "version": 1,
           "blinding": {"r1": {"task_id": "t1", "models": ["b", "a"]}, "r2": {"task_id": "t2", "models": ["a", "b"]}}}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r.update(models="fake-a"), "models: Input should be a valid list (got 'fake-a')"),
        (lambda r: r.update(models=[]), "models: List should have at least 1 item"),
        (lambda r: r.update(models=["a", "a"]), "models: lists a model twice"),
        (lambda r: r.update(records="2"), "records: Input should be a valid integer (got '2')"),
        (lambda r: r.update(records=-1), "records: Input should be greater than or equal to 0"),
        (lambda r: r.update(blinding=[]), "blinding: Input should be a valid dictionary (got [])"),
        (lambda r: r["blinding"]["r1"].update(models="ba"), "blinding.r1.models: Input should be a valid list (got 'ba')"),
        (lambda r: r["blinding"]["r2"].pop("task_id"), "blinding.r2.task_id: Field required"),
        (lambda r: r["blinding"].update(r3=None), "blinding.r3: Input should be a valid dictionary"),
        (lambda r: r["blinding"]["r1"].update(models=["a", "a"]), "blinding: record r1: shows a model twice"),
        (lambda r: r.pop("dataset_id"), "dataset_id: Field required"),
        (lambda r: r.update(url=None), "url: Input should be a valid string"),
        (lambda r: r.update(extra=1), "extra: unknown key"),
    ],
)
def test_a_receipt_of_the_wrong_shape_names_the_key(tmp_path: Path, edit, expected: str) -> None:
    data = json.loads(json.dumps(RECEIPT))
    edit(data)
    (tmp_path / "push.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as error:
        read_receipt(tmp_path / "push.json")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'push.json'}: not a push receipt: {expected}") and "\n" not in message
    assert message.endswith("; run push again")


@pytest.mark.parametrize(("content", "expected"), [
    ("{", "not JSON (line 1, column 2: Expecting property name enclosed in double quotes)"),
    ("[1, 2]", "not a push receipt (a JSON object was expected)"),
    ('"text"', "not a push receipt (a JSON object was expected)"),
    (b"\xff\xfe", "not UTF-8 text (byte 0)"),
])
def test_a_receipt_that_is_not_a_json_object(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as error:
        read_receipt(path)
    assert str(error.value).startswith(f"{path}: {expected}")


def test_a_receipt_from_push_reads_back_equal(tmp_path: Path) -> None:
    receipt = Receipt.model_validate(RECEIPT)
    receipt.write(tmp_path / "push.json")
    again = read_receipt(tmp_path / "push.json")
    assert again == receipt and again.orders() == {"r1": ["b", "a"], "r2": ["a", "b"]}
    assert json.loads((tmp_path / "push.json").read_text()) == RECEIPT


def server_response(status: str = "submitted", **values: object) -> dict:
    return {"user_id": "u1", "status": status, "updated_at": "2026-01-01T00:00:00",
            "values": {name: {"value": value} for name, value in values.items()}}


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (server_response(score_response_1=9, score_response_2=3), "score_response_1 is 9, not a score on the 0-7 scale"),
        (server_response(score_response_1=2, score_response_2=-1), "score_response_2 is -1, not a score on the 0-7 scale"),
        (server_response(score_response_1=1_000_000, score_response_2=3),
         "score_response_1 is 1000000, not a score on the 0-7 scale"),
        (server_response(score_response_1="7", score_response_2=3), "score_response_1 is '7', not a score on the 0-7 scale"),
        (server_response(score_response_1=True, score_response_2=3), "score_response_1 is True, not a score"),
        (server_response(score_response_1=2.5, score_response_2=3), "score_response_1 is 2.5, not a score"),
        (server_response(score_response_1=2, score_response_2=3, to_correct="response_3"),
         "to_correct is 'response_3', not one of response_1, response_2, combination, neither"),
        (server_response(status="pending", score_response_1=2, score_response_2=3),
         "status 'pending' is not one of submitted, draft, discarded"),
        (server_response(score_response_1=2, score_response_2=3, comments=["a"]), "comments is list, not text"),
    ],
)
def test_pull_keeps_no_value_outside_the_settings_and_says_why(response: dict, problem: str) -> None:
    from llm_feedback.annotation.pull import _Answer

    answer = _Answer.read(response, 2)
    assert answer.problem.startswith(problem)
    assert all(score is None or score in range(8) and type(score) is int for score in answer.scores)
    assert answer.to_correct in (None, "response_1", "response_2", "combination", "neither")


def test_pull_reads_a_valid_response_as_it_is() -> None:
    from llm_feedback.annotation.pull import _Answer

    answer = _Answer.read(server_response(score_response_1=0, score_response_2=7, to_correct="combination",
                                          corrected_response="fixed", comments=""), 2)
    assert (answer.status, answer.scores, answer.to_correct, answer.problem) == ("submitted", [0, 7], "combination", None)
    assert (answer.corrected_response, answer.comments) == ("fixed", None)
    assert _Answer.read({"user_id": "u", "status": "discarded", "updated_at": "x", "values": None}, 2).problem is None
