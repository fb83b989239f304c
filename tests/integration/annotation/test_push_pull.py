"""push and pull against the real embedded server: blind, idempotent, and every annotation back on the right model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.dataset_settings import DatasetSpec, shown_answer
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.annotation.records import build_records
from llm_feedback.artifacts import ANNOTATIONS, EXECUTIONS, JUDGMENTS, text_sha
from llm_feedback.errors import ConfigError, PipelineError
from llm_feedback.testing.argilla_records import owner_records
from tests.integration.annotation.annotating import (
    Annotator,
    make_generations,
    make_tasks,
    params_for,
    writer_of,
)
from tests.integration.annotation.conftest import RunningServer

MODELS = ["alpha", "beta", "gamma"]
# each annotator's score for each model, so a score that lands on the wrong model is seen at once
SCORES = {
    "ann-a": {"alpha": 7, "beta": 3, "gamma": 0},
    "ann-b": {"alpha": 6, "beta": 2, "gamma": 1},
    "ann-c": {"alpha": 5, "beta": 4, "gamma": 2},
}


@pytest.fixture
def hosted(argilla_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    """The embedded server, reached the way a hosted one is: its URL, and the key from the environment."""
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    return argilla_server


_names = (f"dataset-{i}" for i in itertools.count())


def new_dataset() -> str:
    return next(_names)


def annotators(server: RunningServer, tmp_path: Path, names: list[str]) -> dict[str, Annotator]:
    params = params_for(server.url, "unused", MODELS)
    added = add_annotators(
        resolve(params.argilla),
        workspace=params.annotation.workspace,
        usernames=names,
        store=tmp_path / "annotators.json",
    )
    stored = json.loads((tmp_path / "annotators.json").read_text())[server.url]
    return {a.username: Annotator(server.url, a.username, stored[a.username]) for a in added}


def test_annotations_come_back_on_the_right_model(hosted: RunningServer, tmp_path: Path) -> None:
    params = params_for(hosted.url, new_dataset(), MODELS, assignment="overlap", min_submitted=2)
    tasks = make_tasks(12)
    pushed = push(params, tasks=tasks, generations=make_generations(tasks, MODELS))
    assert (pushed.created, pushed.receipt.records) == (12, 12)
    orders = {tuple(entry["models"]) for entry in pushed.receipt.blinding.values()}
    assert len(orders) > 1, "the display order is shuffled per record"

    people = annotators(hosted, tmp_path, list(SCORES))
    records = owner_records(hosted.url, hosted.api_key, pushed.receipt.dataset_id)
    expected: list[dict] = []

    def answer(person: str, record: dict, status: str, values: dict | None) -> None:
        people[person].respond(record["id"], status, values)
        shown = [writer_of(shown_answer(record["fields"], p)) for p in range(1, len(MODELS) + 1)]
        for position, model in enumerate(shown, 1):
            expected.append(
                {
                    "record_id": record["external_id"],
                    "task_id": record["external_id"],
                    "annotator": person,
                    "model": model,
                    "position": position,
                    "response_sha": text_sha(shown_answer(record["fields"], position)),
                    "score": (values or {}).get(f"score_response_{position}"),
                    "status": status,
                    "to_correct": None
                    if not values or "to_correct" not in values
                    else (
                        shown[int(values["to_correct"][-1]) - 1]
                        if values["to_correct"].startswith("response_")
                        else values["to_correct"]
                    ),
                    "corrected_response": (values or {}).get("corrected_response"),
                    "comments": (values or {}).get("comments"),
                    "problem": None,
                    "preferred": None,
                }
            )

    def scores(person: str, record: dict) -> dict:
        return {f"score_response_{p}": SCORES[person][writer_of(shown_answer(record["fields"], p))] for p in (1, 2, 3)}

    for i, record in enumerate(records):
        answer("ann-a", record, "submitted", scores("ann-a", record))
        if i < 8:
            answer("ann-b", record, "submitted", scores("ann-b", record))
        if i < 4:
            extra = {
                "to_correct": "response_2" if i % 2 else "neither",
                "corrected_response": f"fixed {i}",
                "comments": f"note {i}",
            }
            answer("ann-c", record, "submitted", {**scores("ann-c", record), **extra})
    answer("ann-b", records[8], "draft", {"score_response_1": 3})
    answer("ann-b", records[9], "discarded", None)

    pulled = pull(params, receipt=pushed.receipt)
    table = ANNOTATIONS.validate(pulled.table, "pulled")
    rows = table.to_pylist()
    assert all(row.pop("updated_at").utcoffset() == timedelta(0) for row in rows)
    key = lambda r: (r["task_id"], r["annotator"], r["position"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)
    assert [key(r) for r in rows] == sorted(key(r) for r in rows), "the artifact is sorted"
    submitted = [r for r in rows if r["status"] == "submitted"]
    assert all(r["score"] == SCORES[r["annotator"]][r["model"]] for r in submitted)
    assert pulled.statuses == {"submitted": 24, "draft": 1, "discarded": 1}
    assert (pulled.records, pulled.annotated, pulled.annotators) == (12, 12, 3)
    assert pull(params, receipt=pushed.receipt).table.equals(pulled.table), "pulling again gives the same table"


def test_a_second_push_changes_nothing_and_new_tasks_are_added_alone(hosted: RunningServer) -> None:
    params = params_for(hosted.url, new_dataset(), MODELS[:2])
    tasks = make_tasks(10)
    first = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    before = owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)

    again = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]), previous=first.receipt)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 10)
    assert again.receipt == first.receipt
    assert owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id) == before, "not one record was touched"

    more = make_tasks(13)
    grown = push(params, tasks=more, generations=make_generations(more, MODELS[:2]), previous=again.receipt)
    assert (grown.created, grown.updated, grown.unchanged, grown.receipt.records) == (3, 0, 10, 13)
    after = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)}
    assert all(after[r["external_id"]]["updated_at"] == r["updated_at"] for r in before)


def test_a_record_someone_answered_never_changes_silently(hosted: RunningServer, tmp_path: Path) -> None:
    dataset = new_dataset()
    params = params_for(hosted.url, dataset, MODELS[:2])
    tasks = make_tasks(4)
    first = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    records = owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)
    answered = records[0]
    person = annotators(hosted, tmp_path, ["ann-edit"])["ann-edit"]
    person.respond(answered["id"], "submitted", {"score_response_1": 5, "score_response_2": 1})

    changed = make_generations(tasks, MODELS[:2], version=" v2")
    with pytest.raises(
        PipelineError,
        match=rf"1 records already answered would change \({answered['external_id']}\).*on_annotated_change",
    ):
        push(params, tasks=tasks, generations=changed, previous=first.receipt)

    skipped = push(
        params_for(hosted.url, dataset, MODELS[:2], on_annotated_change="skip"),
        tasks=tasks,
        generations=changed,
        previous=first.receipt,
    )
    assert (skipped.skipped, skipped.updated, skipped.marked) == (1, 3, 0), "the unanswered records take the new text"
    assert "1 answered and changed, skipped: their new answers are not shown (on_annotated_change: new_record" in (
        skipped.line(output=Path("p"))
    )
    now = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)}
    assert now[answered["external_id"]]["fields"] == answered["fields"]
    assert all(" v2" in shown_answer(now[r["external_id"]]["fields"], 1) for r in records[1:])

    copied = push(
        params_for(hosted.url, dataset, MODELS[:2], on_annotated_change="new_record"),
        tasks=tasks,
        generations=changed,
        previous=skipped.receipt,
    )
    assert (copied.copies, copied.receipt.records) == (1, 5)
    now = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)}
    copy_id = next(rid for rid in now if rid.startswith(answered["external_id"] + "."))
    assert " v2" in shown_answer(now[copy_id]["fields"], 1) and now[answered["external_id"]]["responses"]
    assert copied.receipt.blinding[copy_id]["task_id"] == answered["external_id"]


def test_published_settings_change_in_place_or_stop_with_the_options(hosted: RunningServer, tmp_path: Path) -> None:
    dataset = new_dataset()
    tasks = make_tasks(3)
    first = push(
        params_for(hosted.url, dataset, MODELS[:2]), tasks=tasks, generations=make_generations(tasks, MODELS[:2])
    )

    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text("# New guidelines\n\nRate carefully.")
    edited = push(
        params_for(hosted.url, dataset, MODELS[:2], guidelines=str(guidelines), min_submitted=2),
        tasks=tasks,
        generations=make_generations(tasks, MODELS[:2]),
        previous=first.receipt,
    )
    assert set(edited.settings_changes) == {"guidelines", "min_submitted"}
    settings = httpx.get(
        f"{hosted.url}/api/v1/datasets/{first.receipt.dataset_id}", headers={"X-Argilla-Api-Key": hosted.api_key}
    ).json()
    assert settings["guidelines"].startswith("# New guidelines") and settings["distribution"]["min_submitted"] == 2

    three = make_generations(tasks, MODELS)
    with pytest.raises(ConfigError, match=r"new question score_response_3.*annotation\.dataset.*annotation\.recreate"):
        push(params_for(hosted.url, dataset, MODELS), tasks=tasks, generations=three, previous=edited.receipt)

    record = owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)[0]
    annotators(hosted, tmp_path, ["ann-recreate"])["ann-recreate"].respond(
        record["id"], "submitted", {"score_response_1": 2, "score_response_2": 2}
    )
    with pytest.raises(PipelineError, match=r"submitted responses on 1 records.*annotation\.force"):
        push(
            params_for(hosted.url, dataset, MODELS, recreate=True),
            tasks=tasks,
            generations=three,
            previous=edited.receipt,
        )
    assert len(owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)) == 3, "refused: nothing deleted"

    recreated = push(
        params_for(hosted.url, dataset, MODELS, recreate=True, force=True),
        tasks=tasks,
        generations=three,
        previous=edited.receipt,
    )
    assert recreated.receipt.dataset_id != first.receipt.dataset_id and recreated.created == 3
    assert all(len(entry["models"]) == 3 for entry in recreated.receipt.blinding.values())


def judgments(tasks: pa.Table, score: Callable[[str, str], int | None]) -> pa.Table:
    """A judge's scores for MODELS[:2] on every task: `score(task_id, model)`."""
    return pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "judge": "judge-llm",
                "score": score(t, m),
                "rationale": "ok",
                "error": None,
                "answer": None,
                "request_hash": "h",
            }
            for t in tasks.column("task_id").to_pylist()
            for m in MODELS[:2]
        ],
        schema=JUDGMENTS.schema,
    )


def test_judge_scores_become_suggestions_and_execution_results_metadata(hosted: RunningServer, tmp_path: Path) -> None:
    params = params_for(hosted.url, new_dataset(), MODELS[:2])
    tasks = make_tasks(3)
    ids = tasks.column("task_id").to_pylist()
    judged = judgments(tasks, lambda t, m: 6 if m == "alpha" else (None if t == ids[0] else 2))
    executions = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "status": "pass" if m == "alpha" else "fail",
                "tests_passed": 1,
                "tests_total": 1,
                "duration_s": 0.1,
                "stderr_tail": None,
                "run_hash": "h",
            }
            for t in ids
            for m in MODELS[:2]
        ],
        schema=EXECUTIONS.schema,
    )
    generations = make_generations(tasks, MODELS[:2])
    plain = push(params, tasks=tasks, generations=generations)
    pushed = push(
        params, tasks=tasks, generations=generations, previous=plain.receipt, judgments=judged, executions=executions
    )
    assert pushed.settings_changes == ("metadata execution_response_1", "metadata execution_response_2")
    assert pushed.updated == 3, "unanswered records take the new suggestions and metadata"

    questions = httpx.get(
        f"{hosted.url}/api/v1/datasets/{pushed.receipt.dataset_id}/questions",
        headers={"X-Argilla-Api-Key": hosted.api_key},
    ).json()["items"]
    names = {q["id"]: q["name"] for q in questions}
    for record in httpx.get(
        f"{hosted.url}/api/v1/datasets/{pushed.receipt.dataset_id}/records",
        headers={"X-Argilla-Api-Key": hosted.api_key},
        params={"include": "suggestions"},
    ).json()["items"]:
        order = pushed.receipt.blinding[record["external_id"]]["models"]
        got = {names[s["question_id"]]: (s["value"], s["agent"]) for s in record["suggestions"]}
        want = {
            f"score_response_{p}": (6 if m == "alpha" else 2, "judge-llm")
            for p, m in enumerate(order, 1)
            if not (m == "beta" and record["external_id"] == ids[0])
        }
        assert got == want, "a judge answer without a score is not suggested"
        assert {record["metadata"][f"execution_response_{p}"] for p in (1, 2)} == {"pass", "fail"}
        assert record["metadata"][f"execution_response_{order.index('alpha') + 1}"] == "pass"
    again = push(
        params,
        tasks=tasks,
        generations=generations,
        previous=pushed.receipt,
        judgments=judged,
        executions=executions,
    )
    assert again.unchanged == 3

    record = owner_records(hosted.url, hosted.api_key, pushed.receipt.dataset_id)[0]
    person = annotators(hosted, tmp_path, ["ann-judged"])["ann-judged"]
    person.respond(record["id"], "submitted", {"score_response_1": 4, "score_response_2": 4})
    rescored = judged.set_column(3, "score", [[7] * judged.num_rows])
    updated = push(
        params, tasks=tasks, generations=generations, previous=again.receipt, judgments=rescored, executions=executions
    )
    assert updated.updated == 3, "new suggestions reach answered records too: they change nothing annotators rated"
    after = {r["id"]: r for r in owner_records(hosted.url, hosted.api_key, pushed.receipt.dataset_id)}
    assert after[record["id"]]["responses"][0]["values"]["score_response_1"]["value"] == 4, "the response is kept"


def test_pull_before_anyone_annotated_gives_an_empty_valid_artifact(hosted: RunningServer) -> None:
    params = params_for(hosted.url, new_dataset(), MODELS[:2])
    tasks = make_tasks(5)
    pushed = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    pulled = pull(params, receipt=pushed.receipt)
    assert pulled.table.num_rows == 0 and pulled.table.schema.equals(ANNOTATIONS.schema)
    assert pulled.line(output=Path("data/annotations.parquet")) == (
        "0 of 5 records annotated; responses: none yet; 0 annotators -> data/annotations.parquet (0 rows)"
    )


def test_pull_names_a_receipt_from_elsewhere_or_a_deleted_dataset(hosted: RunningServer) -> None:
    dataset = new_dataset()
    params = params_for(hosted.url, dataset, MODELS[:2])
    tasks = make_tasks(2)
    pushed = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    with pytest.raises(
        PipelineError,
        match=rf"written for llm-feedback/{dataset} at {hosted.url}, but params point at "
        rf"llm-feedback/other at {hosted.url}; run push first",
    ):
        pull(params_for(hosted.url, "other", MODELS[:2]), receipt=pushed.receipt)
    httpx.delete(
        f"{hosted.url}/api/v1/datasets/{pushed.receipt.dataset_id}", headers={"X-Argilla-Api-Key": hosted.api_key}
    ).raise_for_status()
    with pytest.raises(PipelineError, match=rf"llm-feedback/{dataset} \(id .*\) is not on {hosted.url} any more"):
        pull(params, receipt=pushed.receipt)


def test_a_dead_server_or_a_wrong_key_is_one_clear_line_at_once(
    hosted: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from llm_feedback.testing.ports import free_port

    tasks = make_tasks(1)
    dead = params_for(f"http://127.0.0.1:{free_port()}", new_dataset(), MODELS[:2])
    began = time.monotonic()
    with pytest.raises(PipelineError, match=r"^cannot reach Argilla at http://127\.0\.0\.1:\d+: connection refused"):
        push(dead, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    assert time.monotonic() - began < 5, "no long silent retries"

    monkeypatch.setenv("ARGILLA_API_KEY", "not-the-key")
    with pytest.raises(PipelineError, match=r"rejected the API key \(ARGILLA_API_KEY\)$"):
        push(
            params_for(hosted.url, new_dataset(), MODELS[:2]),
            tasks=tasks,
            generations=make_generations(tasks, MODELS[:2]),
        )
    monkeypatch.delenv("ARGILLA_API_KEY")
    with pytest.raises(ConfigError, match="export ARGILLA_API_KEY"):
        push(
            params_for(hosted.url, new_dataset(), MODELS[:2]),
            tasks=tasks,
            generations=make_generations(tasks, MODELS[:2]),
        )


def owner_filter(server: RunningServer, dataset: str, conditions: list[tuple]) -> list[str]:
    """The record ids an owner finds with the SDK's filters (what the UI's metadata and status filters send)."""
    import argilla as rg

    client = rg.Argilla(api_url=server.url, api_key=server.api_key)
    found = client.datasets(name=dataset, workspace="llm-feedback").records(
        query=rg.Query(filter=rg.Filter(conditions))
    )
    return sorted(record.id for record in found)


MARKED = [("metadata.answers_changed", "==", "yes")]
WAITING = [*MARKED, ("status", "==", "pending")]


def test_new_answers_of_a_rated_task_go_to_a_copy_marked_for_rerating(hosted: RunningServer, tmp_path: Path) -> None:
    dataset = new_dataset()
    params = params_for(hosted.url, dataset, MODELS[:2], on_annotated_change="new_record")
    tasks = make_tasks(3)
    first = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    dataset_id = first.receipt.dataset_id
    rated = owner_records(hosted.url, hosted.api_key, dataset_id)[0]
    person = annotators(hosted, tmp_path, ["ann-rerate"])["ann-rerate"]
    person.respond(rated["id"], "submitted", {"score_response_1": 6, "score_response_2": 2})

    v2 = make_generations(tasks, MODELS[:2], version=" v2")
    copied = push(params, tasks=tasks, generations=v2, previous=first.receipt)
    now = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, dataset_id)}
    (copy_id,) = [rid for rid in now if "." in rid]
    assert (copied.copies, copied.marked, copied.waiting) == (1, 1, 1)
    assert "; 1 marked for re-rating in metadata answers_changed, 1 not yet submitted)" in copied.line(output=Path("p"))
    assert now[copy_id]["metadata"]["answers_changed"] == "yes" and " v2" in shown_answer(now[copy_id]["fields"], 1)
    assert [rid for rid, r in now.items() if "answers_changed" in r["metadata"]] == [copy_id]
    assert owner_filter(hosted, dataset, MARKED) == owner_filter(hosted, dataset, WAITING) == [copy_id]
    properties = httpx.get(
        f"{hosted.url}/api/v1/me/datasets/{dataset_id}/metadata-properties",
        headers={"X-Argilla-Api-Key": hosted.api_key},
    ).json()["items"]
    mark = next(p for p in properties if p["name"] == "answers_changed")
    assert (mark["title"], mark["settings"]["values"]) == ("Answers changed after rating", ["yes"])
    assert not any(m in json.dumps(r["metadata"]) for r in now.values() for m in MODELS), "metadata names no model"

    before = owner_records(hosted.url, hosted.api_key, dataset_id)
    again = push(params, tasks=tasks, generations=v2, previous=copied.receipt)
    assert (again.created, again.updated, again.copies, again.marked) == (0, 0, 0, 1)
    assert again.receipt == copied.receipt
    assert owner_records(hosted.url, hosted.api_key, dataset_id) == before, "not one record was touched"

    person.respond(now[copy_id]["id"], "submitted", {"score_response_1": 5, "score_response_2": 3})
    rated_copy = push(params, tasks=tasks, generations=v2, previous=again.receipt)
    assert (rated_copy.updated, rated_copy.marked, rated_copy.waiting) == (0, 1, 0), "the mark stays once rated"
    assert owner_filter(hosted, dataset, MARKED) == [copy_id] and owner_filter(hosted, dataset, WAITING) == []

    v3 = make_generations(tasks, MODELS[:2], version=" v3")
    newer = push(params, tasks=tasks, generations=v3, previous=rated_copy.receipt)
    after = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, dataset_id)}
    (newest,) = set(after) - set(now)
    assert (newer.copies, newer.marked, newer.waiting) == (1, 1, 1)
    assert owner_filter(hosted, dataset, MARKED) == [newest], "the older copy holds stale text: its mark goes"
    assert after[copy_id]["responses"] and after[copy_id]["fields"] == now[copy_id]["fields"]


def test_a_dataset_made_before_the_mark_gets_it_in_place_on_the_next_push(
    hosted: RunningServer, tmp_path: Path
) -> None:
    """A dataset as earlier versions made it: no answers_changed property, and a copy of changed answers unmarked."""
    import argilla as rg

    dataset = new_dataset()
    params = params_for(hosted.url, dataset, MODELS[:2], on_annotated_change="new_record")
    client = resolve(params.argilla).client()  # the SDK's settings objects need a client first
    spec = DatasetSpec.from_params(params.annotation, rubric=params.rubric, responses=2, with_executions=False)
    settings = spec.build()
    settings.metadata.remove("answers_changed")
    workspace = client.workspaces("llm-feedback") or rg.Workspace(name="llm-feedback", client=client).create()
    old = rg.Dataset(name=dataset, workspace=workspace, settings=settings, client=client).create()
    tasks = make_tasks(3)
    v1 = build_records(tasks, generations=make_generations(tasks, MODELS[:2]), models=MODELS[:2], spec=spec, seed=42)
    old.records.log([record.to_sdk() for record in v1.records])
    rated = next(
        r for r in owner_records(hosted.url, hosted.api_key, str(old.id)) if r["external_id"] == v1.records[0].record_id
    )
    annotators(hosted, tmp_path, ["ann-old"])["ann-old"].respond(
        rated["id"], "submitted", {"score_response_1": 1, "score_response_2": 7}
    )
    v2 = make_generations(tasks, MODELS[:2], version=" v2")
    changed = build_records(tasks, generations=v2, models=MODELS[:2], spec=spec, seed=42).records[0]
    old_copy = replace(changed, record_id=f"{changed.task_id}.{changed.content_hash()[:8]}")  # as it was made then
    old.records.log([old_copy.to_sdk()])

    pushed = push(params, tasks=tasks, generations=v2)
    assert pushed.receipt.dataset_id == str(old.id) and pushed.settings_changes == ("metadata answers_changed",)
    assert (pushed.copies, pushed.marked, pushed.receipt.records) == (0, 1, 4), "the copy there is marked, not copied"
    now = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, str(old.id))}
    assert now[rated["external_id"]]["responses"] and now[rated["external_id"]]["fields"] == rated["fields"]
    assert owner_filter(hosted, dataset, MARKED) == [old_copy.record_id]

    before = owner_records(hosted.url, hosted.api_key, str(old.id))
    again = push(params, tasks=tasks, generations=v2, previous=pushed.receipt)
    assert (again.created, again.updated, again.settings_changes, again.receipt) == (0, 0, (), pushed.receipt)
    assert owner_records(hosted.url, hosted.api_key, str(old.id)) == before, "not one record was touched"


def test_a_judge_run_after_the_copy_updates_it_instead_of_copying_again(hosted: RunningServer, tmp_path: Path) -> None:
    params = params_for(hosted.url, new_dataset(), MODELS[:2], on_annotated_change="new_record")
    tasks = make_tasks(2)
    first = push(params, tasks=tasks, generations=make_generations(tasks, MODELS[:2]))
    record = owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id)[0]
    annotators(hosted, tmp_path, ["ann-judge"])["ann-judge"].respond(
        record["id"], "submitted", {"score_response_1": 3, "score_response_2": 3}
    )
    v2 = make_generations(tasks, MODELS[:2], version=" v2")
    copied = push(params, tasks=tasks, generations=v2, previous=first.receipt)
    rejudged = push(
        params, tasks=tasks, generations=v2, previous=copied.receipt, judgments=judgments(tasks, lambda t, m: 6)
    )
    assert (rejudged.copies, rejudged.updated, rejudged.marked, rejudged.receipt.records) == (0, 2, 1, 3)
    (copy,) = [
        r for r in owner_records(hosted.url, hosted.api_key, first.receipt.dataset_id) if "." in r["external_id"]
    ]
    assert copy["external_id"] in copied.receipt.blinding and copy["metadata"]["answers_changed"] == "yes"
