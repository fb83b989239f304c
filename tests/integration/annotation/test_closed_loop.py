"""The closed loop on CPU with a tiny model built here (no Hub): export's train split trains a LoRA adapter through
`dvc repro`, the tuned model is declared under models: with it, base and tuned answer only export's test-split tasks
(fetch.held_out), push publishes them to the embedded server, an annotator rates them through the API, and `dvc repro`
pulls the ratings and analyzes them: metrics.json and analyze's line report tuned versus base. With a task the tuned
model was trained on among its answers, analyze refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.params import load_params
from llm_feedback.splits import in_test_split
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.tiny_models import build_model
from llm_feedback.testing.training_data import instruction, task_id, write_training_export
from tests.integration.annotation.annotating import Annotator
from tests.integration.annotation.conftest import RunningServer
from tests.project import copy_project, edit_params, run, run_stage

pytestmark = pytest.mark.slow
TRAIN = {
    "enabled": True,
    "base": "base",
    "max_steps": 4,
    "learning_rate": 0.01,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "logging_steps": 1,
    "save_steps": 2,
    "lora": {"rank": 8, "alpha": 16},
}


def test_a_model_tuned_on_annotations_is_compared_with_its_base_on_held_out_tasks_by_annotators(
    argilla_server: RunningServer, tmp_path: Path, tiny_tokenizer: Path
) -> None:
    base_model = build_model(tmp_path / "base", tiny_tokenizer, hidden_size=128)
    repo = copy_project(tmp_path / "project")
    base = {"backend": "transformers", "model": str(base_model), "device": "cpu"}

    def tiny_training(params: dict) -> None:
        params["models"] = {"base": base}
        params["compare"] = ["base"]
        params["train"].update(TRAIN)

    edit_params(repo, tiny_training)
    write_training_export(repo / "data/export", train=4, test=2)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    trained = run(["dvc", "repro", "--single-item", "train"], repo).stdout
    assert "train: sft of base (lora) on 4 tasks: sft 4 steps" in trained, trained
    assert (repo / "models/tuned/adapter_model.safetensors").is_file()

    def compare_tuned_with_base_on_held_out_tasks(params: dict) -> None:
        params["models"]["tuned"] = {**base, "adapter": "models/tuned"}
        params["compare"] = ["base", "tuned"]
        params["fetch"]["held_out"] = True
        params["generation"]["max_new_tokens"] = 12
        params["argilla"].update(data_dir=str(argilla_server.data_dir), port=argilla_server.server.port)
        params["annotation"]["dataset"] = "closed-loop"

    edit_params(repo, compare_tuned_with_base_on_held_out_tasks)
    pushed = run(["dvc", "repro", "push"], repo).stdout
    assert "push: " in pushed, pushed
    params = load_params(repo / "params.yaml")
    generations = pq.read_table(repo / "data/generations.parquet").to_pylist()
    assert generations and all(g["error"] is None for g in generations)
    tasks = {g["task_id"] for g in generations}
    assert all(in_test_split(t, params.export.seed, params.export.test_fraction) for t in tasks), "held out only"
    answers = {(g["task_id"], g["model"]): g["response"] for g in generations}
    assert any(answers[t, "base"] != answers[t, "tuned"] for t in tasks), "the adapter changes the answers"

    (added,) = add_annotators(
        resolve(params.argilla),
        workspace=params.annotation.workspace,
        usernames=["loop-rater"],
        store=tmp_path / "a.json",
    )
    rater = Annotator(argilla_server.url, "loop-rater", added.password or "")
    receipt = read_receipt(repo / "data/push.json")
    records = owner_records(argilla_server.url, argilla_server.api_key, receipt.dataset_id)
    assert {r["external_id"] for r in records} == tasks
    for n, record in enumerate(records):  # tuned 6 or 7, base 1 to 3
        tuned, worse = 6 + n % 2, 1 + n % 3
        tuned_first = receipt.blinding[record["external_id"]]["models"][0] == "tuned"
        scores = (tuned, worse) if tuned_first else (worse, tuned)
        rater.respond(record["id"], "submitted", {"score_response_1": scores[0], "score_response_2": scores[1]})

    analyzed = run(["dvc", "repro", "analyze"], repo).stdout
    line = next(x for x in analyzed.splitlines() if x.startswith("analyze: "))
    assert "base - tuned = -" in line and "(95% CI " in line and f"on {len(tasks)} tasks" in line, line
    pair = json.loads((repo / "metrics.json").read_text())["pairwise"]
    pair = pair["base_vs_tuned"]  # in compare's order: base first
    assert pair["ci_low"] <= pair["difference"] <= pair["ci_high"] < 0, pair  # tuned rated higher, with an interval
    assert pair["difference"] <= -3, pair

    trained_on = task_id(instruction(0))
    firsts = {g["model"]: g for g in reversed(generations)}  # one answer of each model, moved to a trained task
    leaked = [{**g, "task_id": trained_on, "request_hash": f"leak-{m}"} for m, g in firsts.items()]
    pq.write_table(pa.Table.from_pylist(generations + leaked, schema=pq.read_schema(repo / "data/generations.parquet")),
                   repo / "data/generations.parquet")  # fmt: skip
    refused = run_stage("analyze", repo)
    assert refused.returncode == 2, refused.stderr
    assert f"analyze: error: compare: tuned was trained on 1 of the tasks it is compared on ({trained_on})" in (
        refused.stderr
    )
