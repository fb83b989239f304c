"""Adjudication against the real embedded server: two annotators who disagree on a record get it marked
`needs_review` on the next push, an owner finds it with a metadata filter, analyze's disagreements page lists it
(blind), and the mark comes off once they agree; a dataset made before the mark gets the property in place."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.dataset_settings import DatasetSpec
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.annotation.records import build_records
from llm_feedback.disagreements import find_disagreements
from llm_feedback.testing.argilla_records import owner_records
from tests.integration.annotation.annotating import Annotator, make_generations, make_tasks, params_for
from tests.integration.annotation.conftest import RunningServer

MODELS = ["alpha", "beta"]
MARKED = [("metadata.needs_review", "==", "yes")]
_names = (f"adjudication-{i}" for i in itertools.count())


@pytest.fixture
def hosted(argilla_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    return argilla_server


def people(server: RunningServer, tmp_path: Path, names: list[str]) -> dict[str, Annotator]:
    params = params_for(server.url, "unused", MODELS)
    store = tmp_path / "annotators.json"
    added = add_annotators(resolve(params.argilla), workspace=params.annotation.workspace, usernames=names, store=store)
    stored = json.loads(store.read_text())[server.url]
    return {a.username: Annotator(server.url, a.username, stored[a.username]) for a in added}


def scored(order: list[str], by_model: dict[str, int]) -> dict:
    """A submitted response giving each model its score, at whatever position `order` (the blinding map) shows it."""
    values = {f"score_response_{p}": {"value": by_model[model]} for p, model in enumerate(order, 1)}
    return {"status": "submitted", "values": values}


def rate(person: Annotator, record: dict, order: list[str], by_model: dict[str, int]) -> str:
    """Submit a score per model, as an annotator does in the UI; the response's id, to change it later."""
    made = person.client.post(f"/api/v1/records/{record['id']}/responses", json=scored(order, by_model))
    assert made.status_code == 201, made.text
    return made.json()["id"]


def owner_filter(server: RunningServer, dataset: str, conditions: list[tuple]) -> list[str]:
    """The record ids an owner finds with the SDK's filters (what the UI's metadata filter sends)."""
    import argilla as rg

    client = rg.Argilla(api_url=server.url, api_key=server.api_key)
    found = client.datasets(name=dataset, workspace="llm-feedback").records(
        query=rg.Query(filter=rg.Filter(conditions))
    )
    return sorted(record.id for record in found)


def test_a_record_annotators_disagree_on_is_marked_until_they_agree(hosted: RunningServer, tmp_path: Path) -> None:
    dataset = next(_names)
    params = params_for(hosted.url, dataset, MODELS, assignment="overlap", min_submitted=2)
    tasks = make_tasks(3)
    generations = make_generations(tasks, MODELS)
    first = push(params, tasks=tasks, generations=generations)
    dataset_id = first.receipt.dataset_id
    disputed, agreed, single = owner_records(hosted.url, hosted.api_key, dataset_id)
    team = people(hosted, tmp_path, ["adj-x", "adj-y"])
    order = first.receipt.orders()
    rate(team["adj-x"], disputed, order[disputed["external_id"]], {"alpha": 7, "beta": 2})
    changing = rate(team["adj-y"], disputed, order[disputed["external_id"]], {"alpha": 1, "beta": 2})  # 6 apart
    rate(team["adj-x"], agreed, order[agreed["external_id"]], {"alpha": 5, "beta": 3})
    rate(team["adj-y"], agreed, order[agreed["external_id"]], {"alpha": 4, "beta": 3})  # 1 apart: no disagreement
    rate(team["adj-x"], single, order[single["external_id"]], {"alpha": 0, "beta": 7})  # nobody to disagree with

    marked = push(params, tasks=tasks, generations=generations, previous=first.receipt)
    assert (marked.created, marked.updated, marked.review) == (0, 1, 1), "only the disputed record is touched"
    assert "; 1 marked needs_review: their annotators disagree)" in marked.line(output=Path("p"))
    assert marked.receipt == first.receipt
    assert owner_filter(hosted, dataset, MARKED) == [disputed["external_id"]]
    now = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, dataset_id)}
    assert now[disputed["external_id"]]["metadata"]["needs_review"] == "yes"
    assert len(now[disputed["external_id"]]["responses"]) == 2, "the responses stay"
    assert not any(m in json.dumps(r["metadata"]) for r in now.values() for m in MODELS), "metadata names no model"
    properties = httpx.get(
        f"{hosted.url}/api/v1/me/datasets/{dataset_id}/metadata-properties",
        headers={"X-Argilla-Api-Key": hosted.api_key},
    ).json()["items"]
    mark = next(p for p in properties if p["name"] == "needs_review")
    assert (mark["title"], mark["settings"]["values"]) == ("Annotators disagree", ["yes"])

    before = owner_records(hosted.url, hosted.api_key, dataset_id)
    again = push(params, tasks=tasks, generations=generations, previous=marked.receipt)
    assert (again.updated, again.unchanged, again.review) == (0, 3, 1)
    assert owner_records(hosted.url, hosted.api_key, dataset_id) == before, "not one record was touched"

    found = find_disagreements(
        pull(params, receipt=again.receipt).table,
        params=params.analyze,
        tasks=tasks,
        url=again.receipt.url,
        dataset_id=dataset_id,
    )
    assert found.metrics == {"multi_rated_records": 2, "disagreeing_records": 1}
    assert f"## 1. Record {disputed['external_id']}: scores 6 points apart" in found.page
    assert agreed["external_id"] not in found.page and single["external_id"] not in found.page
    assert f"/dataset/{dataset_id}/annotation-mode?" in found.page
    assert not any(m in found.page for m in MODELS), "the page names no model"

    body = scored(order[disputed["external_id"]], {"alpha": 6, "beta": 2})  # adj-y comes round to adj-x's view
    changed = team["adj-y"].client.put(f"/api/v1/responses/{changing}", json=body)
    assert changed.status_code == 200, changed.text

    settled = push(params, tasks=tasks, generations=generations, previous=again.receipt)
    assert (settled.updated, settled.review) == (1, 0)
    assert owner_filter(hosted, dataset, MARKED) == [], "they agree now: the mark is gone"
    after = {r["external_id"]: r for r in owner_records(hosted.url, hosted.api_key, dataset_id)}
    assert "needs_review" not in after[disputed["external_id"]]["metadata"]
    assert len(after[disputed["external_id"]]["responses"]) == 2
    found = find_disagreements(
        pull(params, receipt=settled.receipt).table,
        params=params.analyze,
        tasks=tasks,
        url=settled.receipt.url,
        dataset_id=dataset_id,
    )
    assert found.metrics == {"multi_rated_records": 2, "disagreeing_records": 0} and "## 1." not in found.page


def test_a_dataset_made_before_the_review_mark_gets_it_in_place(hosted: RunningServer, tmp_path: Path) -> None:
    import argilla as rg

    dataset = next(_names)
    params = params_for(hosted.url, dataset, MODELS, assignment="overlap", min_submitted=2)
    client = resolve(params.argilla).client()
    spec = DatasetSpec.from_params(params.annotation, rubric=params.rubric, responses=2, with_executions=False)
    settings = spec.build()
    settings.metadata.remove("needs_review")
    workspace = client.workspaces("llm-feedback") or rg.Workspace(name="llm-feedback", client=client).create()
    old = rg.Dataset(name=dataset, workspace=workspace, settings=settings, client=client).create()
    tasks = make_tasks(2)
    generations = make_generations(tasks, MODELS)
    built = build_records(tasks, generations=generations, models=MODELS, spec=spec, seed=42)
    old.records.log([record.to_sdk() for record in built.records])
    record = owner_records(hosted.url, hosted.api_key, str(old.id))[0]
    order = next(list(r.models) for r in built.records if r.record_id == record["external_id"])
    team = people(hosted, tmp_path, ["adj-old-x", "adj-old-y"])
    rate(team["adj-old-x"], record, order, {"alpha": 0, "beta": 7})
    rate(team["adj-old-y"], record, order, {"alpha": 4, "beta": 7})

    pushed = push(params, tasks=tasks, generations=generations)
    assert pushed.receipt.dataset_id == str(old.id) and pushed.settings_changes == ("metadata needs_review",)
    assert (pushed.created, pushed.updated, pushed.review) == (0, 1, 1)
    assert owner_filter(hosted, dataset, MARKED) == [record["external_id"]]
