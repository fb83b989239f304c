"""Each comparison in a dataset of its own: with `{compare}` in annotation.dataset, comparing one more model (a third
response field, which push refuses on an annotated dataset) publishes a new dataset, and the first comparison's
dataset keeps its records and annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.params import load_params
from llm_feedback.testing.argilla_records import owner_records
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import Annotator, make_generations, make_tasks
from tests.integration.annotation.conftest import RunningServer
from tests.project import make_project, run_stage

MODELS = ["base", "other", "tuned"]


@pytest.mark.slow
def test_a_new_comparison_gets_its_own_dataset_and_the_first_keeps_its_annotations(
    argilla_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = make_tasks(3)
    params = {
        "argilla": {"url": argilla_server.url},
        "annotation": {"dataset": "cmp-{compare}", "guidelines": str(PROJECT_ROOT / "annotation/guidelines.md")},
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
        "compare": ["base", "other"],
    }
    folder = make_project(
        tmp_path / "p", params=params, inputs={"tasks": tasks, "generations": make_generations(tasks, MODELS)}
    )
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    env = {"ARGILLA_API_KEY": argilla_server.api_key}
    assert run_stage("push", folder, env=env).returncode == 0
    first = read_receipt(folder / "data/push.json")
    assert first.dataset == "cmp-base-vs-other"

    loaded = load_params(folder / "params.yaml")
    add_annotators(
        resolve(loaded.argilla),
        workspace=loaded.annotation.workspace,
        usernames=["rater-cmp"],
        store=tmp_path / "a.json",
    )
    password = json.loads((tmp_path / "a.json").read_text())[argilla_server.url]["rater-cmp"]
    rater = Annotator(argilla_server.url, "rater-cmp", password)
    [record, *_] = owner_records(argilla_server.url, argilla_server.api_key, first.dataset_id)
    rater.respond(record["id"], "submitted", {"score_response_1": 5, "score_response_2": 3})

    params["compare"] = ["base", "other", "tuned"]  # a third response field: a new dataset, not a refusal
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    pushed = run_stage("push", folder, env=env)
    assert pushed.returncode == 0, pushed.stderr
    second = read_receipt(folder / "data/push.json")
    assert (second.dataset, second.records) == ("cmp-base-vs-other-vs-tuned", 3)
    assert second.dataset_id != first.dataset_id

    kept = pull(loaded, receipt=first).table.to_pylist()  # the first comparison, from its own receipt
    assert {(r["annotator"], r["model"], r["score"]) for r in kept} == {
        ("rater-cmp", model, score) for model, score in zip(first.orders()[record["external_id"]], (5, 3))
    }
    assert len(owner_records(argilla_server.url, argilla_server.api_key, first.dataset_id)) == 3
    pulled = run_stage("pull", folder, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "0 of 3 records annotated" in pulled.stdout, "the new comparison starts without annotations"
