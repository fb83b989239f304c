"""The parts of push and pull that need no server: blinding, assignment, settings comparison, receipt, connection."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.annotation.connection import Target, _sends_hf_token, resolve
from llm_feedback.annotation.dataset_settings import DatasetSpec, describe_structure_change, shown_answer
from llm_feedback.annotation.pull import Pulled, _unblind
from llm_feedback.annotation.push import Pushed
from llm_feedback.annotation.receipt import Receipt, read_receipt
from llm_feedback.annotation.records import annotator_group, blind_order, build_records
from llm_feedback.artifacts import ANNOTATIONS
from llm_feedback.errors import ConfigError, InputError
from llm_feedback.params import AnnotationParams, ArgillaParams, Params, RubricParams
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import make_generations, make_tasks


def spec(responses: int = 2, **params) -> DatasetSpec:
    annotation = AnnotationParams(
        guidelines=PROJECT_ROOT / "annotation/guidelines.md",
        **params,
    )
    return DatasetSpec.from_params(annotation, rubric=RubricParams(), responses=responses, with_executions=False)


def test_display_order_is_seeded_per_task_and_balanced() -> None:
    models = ["a", "b"]
    orders = [blind_order(f"task-{i}", models=models, seed=42) for i in range(2000)]
    assert orders == [blind_order(f"task-{i}", models=models, seed=42) for i in range(2000)], "stable across calls"
    first = Counter(order[0] for order in orders)
    assert 900 < first["a"] < 1100, f"each model is Response 1 about half the time: {first}"
    assert [blind_order(f"task-{i}", models=models, seed=7) for i in range(50)] != orders[:50], "the seed matters"
    assert sorted(blind_order("t", models=["x", "y", "z"], seed=1)) == ["x", "y", "z"]


def test_annotator_groups_are_seeded_and_spread() -> None:
    groups = ["group-1", "group-2", "group-3"]
    counts = Counter(annotator_group(f"task-{i}", groups=groups, seed=42) for i in range(3000))
    assert set(counts) == set(groups) and min(counts.values()) > 900
    assert annotator_group("t", groups=groups, seed=42) == annotator_group("t", groups=groups, seed=42)


def test_records_keep_known_orders_and_leave_out_unanswered_tasks() -> None:
    tasks = make_tasks(6)
    generations = make_generations(tasks, ["a", "b"])
    ids = tasks.column("task_id").to_pylist()
    response = generations.column("response").to_pylist()
    response[0] = None  # task 0, model a failed
    generations = generations.set_column(2, "response", [response])
    known = {ids[1]: ["b", "a"], ids[2]: ["a", "b"]}
    built = build_records(tasks, generations=generations, models=["a", "b"], spec=spec(), seed=3, known_orders=known)
    assert built.missing_answers == 1 and [r.record_id for r in built.records] == ids[1:]
    by_id = {r.record_id: r for r in built.records}
    assert by_id[ids[1]].models == ("b", "a") and "written by b" in shown_answer(by_id[ids[1]].fields, 1)
    assert by_id[ids[2]].models == ("a", "b")
    assert all(r.metadata["annotator_group"] in ("group-1", "group-2") for r in built.records)
    overlap = build_records(tasks, generations=generations, models=["a", "b"], spec=spec(assignment="overlap"), seed=3)
    assert all("annotator_group" not in r.metadata for r in overlap.records)


def test_structure_changes_are_named() -> None:
    two, three = spec(2, layout="stacked").structure(), spec(3, layout="stacked").structure()
    assert describe_structure_change(current=two, wanted=three) == (
        "new field response_3, new question score_response_3, question to_correct changed"
    )
    side_by_side = spec(2).structure(), spec(3).structure()  # one field holds every answer
    assert describe_structure_change(current=side_by_side[0], wanted=side_by_side[1]) == (
        "new question score_response_3, question to_correct changed"
    )
    assert describe_structure_change(current=two, wanted=side_by_side[0]) == (
        "new field responses, no field response_1, no field response_2"
    )
    assert spec(2).settings_hash() != spec(2, min_submitted=2).settings_hash()
    assert spec(2).structure() == spec(2, min_submitted=3).structure(), "min_submitted can change in place"


def test_labels_unblind_to_model_names() -> None:
    assert _unblind("response_2", ["x", "y"]) == "y"
    assert _unblind("neither", ["x", "y"]) == "neither" and _unblind(None, ["x"]) is None


def test_a_receipt_round_trips_and_a_broken_one_is_named(tmp_path: Path) -> None:
    receipt = Receipt(
        url="http://h",
        workspace="w",
        dataset="d",
        dataset_id="id",
        models=["a", "b"],
        records=1,
        settings_hash="s",
        content_hash="c",
        blinding={"t": {"task_id": "t", "models": ["b", "a"]}},
    )
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
    for url, message in (
        ("argilla.example.com", "must be 'local'"),
        ("https://user:pw@host", "must not carry credentials"),
    ):
        with pytest.raises(ValueError, match=message):
            Params.model_validate({**base, "argilla": {"url": url}})
    with pytest.raises(ValueError, match="force only applies with recreate"):
        Params.model_validate({**base, "annotation": {"force": True}})


RECEIPT = {
    "url": "http://h",
    "workspace": "w",
    "dataset": "d",
    "dataset_id": "id",
    "models": ["a", "b"],
    "records": 2,
    "settings_hash": "s",
    "content_hash": "c",
    "version": 1,
    "blinding": {"r1": {"task_id": "t1", "models": ["b", "a"]}, "r2": {"task_id": "t2", "models": ["a", "b"]}},
}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r.update(models="fake-a"), "models: Input should be a valid list (got 'fake-a')"),
        (lambda r: r.update(models=[]), "models: List should have at least 1 item"),
        (lambda r: r.update(models=["a", "a"]), "models: lists a model twice"),
        (lambda r: r.update(records="2"), "records: Input should be a valid integer (got '2')"),
        (lambda r: r.update(records=-1), "records: Input should be greater than or equal to 0"),
        (lambda r: r.update(blinding=[]), "blinding: Input should be a valid dictionary (got [])"),
        (
            lambda r: r["blinding"]["r1"].update(models="ba"),
            "blinding.r1.models: Input should be a valid list (got 'ba')",
        ),
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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "not JSON (line 1, column 2: Expecting property name enclosed in double quotes)"),
        ("[1, 2]", "not a push receipt (a JSON object was expected)"),
        ('"text"', "not a push receipt (a JSON object was expected)"),
        (b"\xff\xfe", "not UTF-8 text (byte 0)"),
    ],
)
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
    return {
        "user_id": "u1",
        "status": status,
        "updated_at": "2026-01-01T00:00:00",
        "values": {name: {"value": value} for name, value in values.items()},
    }


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (
            server_response(score_response_1=9, score_response_2=3),
            "score_response_1 is 9, not a score on the 0-7 scale",
        ),
        (
            server_response(score_response_1=2, score_response_2=-1),
            "score_response_2 is -1, not a score on the 0-7 scale",
        ),
        (
            server_response(score_response_1=1_000_000, score_response_2=3),
            "score_response_1 is 1000000, not a score on the 0-7 scale",
        ),
        (
            server_response(score_response_1="7", score_response_2=3),
            "score_response_1 is '7', not a score on the 0-7 scale",
        ),
        (server_response(score_response_1=True, score_response_2=3), "score_response_1 is True, not a score"),
        (server_response(score_response_1=2.5, score_response_2=3), "score_response_1 is 2.5, not a score"),
        (
            server_response(score_response_1=2, score_response_2=3, to_correct="response_3"),
            "to_correct is 'response_3', not one of response_1, response_2, combination, neither",
        ),
        (
            server_response(status="pending", score_response_1=2, score_response_2=3),
            "status 'pending' is not one of submitted, draft, discarded",
        ),
        (server_response(score_response_1=2, score_response_2=3, comments=["a"]), "comments is list, not text"),
    ],
)
def test_pull_keeps_no_value_outside_the_settings_and_says_why(response: dict, problem: str) -> None:
    from llm_feedback.annotation.pull import Answer, Asked

    answer = Answer.read(response, Asked(responses=2, scale=range(0, 8)))
    assert answer.problem.startswith(problem)
    assert all(score is None or (score in range(8) and type(score) is int) for score in answer.scores)
    assert answer.to_correct in (None, "response_1", "response_2", "combination", "neither")


def test_pull_reads_a_valid_response_as_it_is() -> None:
    from llm_feedback.annotation.pull import Answer, Asked

    answer = Answer.read(
        server_response(
            score_response_1=0, score_response_2=7, to_correct="combination", corrected_response="fixed", comments=""
        ),
        Asked(responses=2, scale=range(0, 8)),
    )
    assert (answer.status, answer.scores, answer.to_correct, answer.problem) == (
        "submitted",
        [0, 7],
        "combination",
        None,
    )
    assert (answer.corrected_response, answer.comments) == ("fixed", None)
    assert (
        Answer.read(
            {"user_id": "u", "status": "discarded", "updated_at": "x", "values": None},
            Asked(responses=2, scale=range(0, 8)),
        ).problem
        is None
    )


def test_push_and_pull_lines_are_the_stages_summaries() -> None:
    receipt = Receipt.model_validate(
        {
            **RECEIPT,
            "url": "http://127.0.0.1:6900",
            "workspace": "llm-feedback",
            "dataset": "code-answers",
            "records": 44,
        }
    )
    pushed = Pushed(
        receipt=receipt,
        created=44,
        updated=0,
        unchanged=0,
        skipped=0,
        copies=0,
        missing_answers=0,
        settings_changes=(),
        marked=0,
        waiting=0,
    )
    assert pushed.line(output=Path("data/push.json")) == (
        "44 records in llm-feedback/code-answers at http://127.0.0.1:6900 (44 new; 0 updated; 0 unchanged) "
        "-> data/push.json"
    )
    everything = replace(
        pushed,
        created=1,
        updated=2,
        unchanged=3,
        skipped=4,
        copies=5,
        missing_answers=6,
        settings_changes=("guidelines", "min_submitted"),
        marked=7,
        waiting=2,
    )
    assert everything.line(output=Path("p.json")) == (
        "44 records in llm-feedback/code-answers at http://127.0.0.1:6900 (1 new; 2 updated; 3 unchanged; "
        "4 answered and changed, skipped: their new answers are not shown (on_annotated_change: new_record adds "
        "them for re-rating); 5 answered and changed, added as new records; "
        "7 marked for re-rating in metadata answers_changed, 2 not yet submitted; "
        "6 tasks left out: a model has no answer yet (rerun generate); updated guidelines, min_submitted) -> p.json"
    )

    empty = ANNOTATIONS.schema.empty_table()
    pulled = Pulled(table=empty, records=44, annotated=0, statuses={}, annotators=0, not_in_receipt=0)
    assert pulled.line(output=Path("data/annotations.parquet")) == (
        "0 of 44 records annotated; responses: none yet; 0 annotators -> data/annotations.parquet (0 rows)"
    )
    rows = pa.Table.from_pylist(
        [
            {
                "record_id": "r1",
                "task_id": "t1",
                "annotator": "a",
                "model": "m",
                "position": 1,
                "response_sha": "s",
                "status": "draft",
                "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        ],
        schema=ANNOTATIONS.schema,
    )
    mixed = Pulled(
        table=rows,
        records=3,
        annotated=2,
        statuses={"submitted": 2, "draft": 1},
        annotators=2,
        not_in_receipt=1,
        problems=(
            "record r1 by a: status 'x' is not one of submitted, draft, discarded",
            "record r2 by b: comments is list, not text",
        ),
    )
    assert mixed.line(output=Path("a.parquet")) == (
        "2 of 3 records annotated; responses: 1 draft, 2 submitted; 2 annotators; 1 records left out: the receipt does "
        "not know their models (run push); 2 responses will not count, they hold a value outside the dataset's "
        "settings (column problem; first: record r1 by a: status 'x' is not one of submitted, draft, discarded) "
        "-> a.parquet (1 rows)"
    )
