"""The closed loop on CPU with tiny models built here (no Hub), through `dvc repro` and `dvc exp run` in a copy of the
shipped project: two models answer, an annotator rates them on the embedded server, export turns the ratings into
SFT rows and DPO pairs, train tunes the base with LoRA, and the evaluate stage compares the tuned model with its base
on export's test-split tasks only, in a dataset of its own per trained model. Two experiments (SFT, then DPO) each get
their verdict, and `dvc exp show` lists both."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.params import load_params
from llm_feedback.splits import in_test_split
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.tiny_models import build_model
from tests.integration.annotation.annotating import Annotator
from tests.integration.annotation.conftest import RunningServer
from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow
TRAIN = {
    "base": "base",
    "max_steps": 4,
    "learning_rate": 0.002,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "logging_steps": 1,
    "save_steps": 2,
    "lora": {"rank": 8, "alpha": 16},
}


def rate(rater: Annotator, server: RunningServer, receipt_path: Path, better: str) -> set[str]:
    """Every record of the receipt's dataset: `better`'s answer 6 or 7, the other's 1 to 3. Returns the tasks."""
    receipt = read_receipt(receipt_path)
    records = owner_records(server.url, server.api_key, receipt.dataset_id)
    for n, record in enumerate(records):
        high, low = 6 + n % 2, 1 + n % 3
        better_first = receipt.blinding[record["external_id"]]["models"][0] == better
        first, second = (high, low) if better_first else (low, high)
        rater.respond(record["id"], "submitted", {"score_response_1": first, "score_response_2": second})
    return {r["external_id"] for r in records}


def experiment(repo: Path, name: str, *settings: str) -> str:
    """An experiment from train on: the main comparison's push and pull need not run again for it."""
    return run(["dvc", "exp", "run", "--downstream", "train", "-n", name, *(f"-S{s}" for s in settings)], repo).stdout


def test_annotations_train_a_model_whose_verdict_against_its_base_each_experiment_tracks(
    argilla_server: RunningServer, tmp_path: Path, tiny_tokenizer: Path
) -> None:
    base = {"backend": "transformers", "model": str(build_model(tmp_path / "base", tiny_tokenizer, hidden_size=128))}
    other = {"backend": "transformers", "model": str(build_model(tmp_path / "other", tiny_tokenizer, seed=1))}
    repo = copy_project(tmp_path / "project")

    def two_tiny_models(params: dict) -> None:
        params["models"] = {"base": base, "other": other}
        params["compare"] = ["base", "other"]
        params["fetch"]["limit"] = 26
        params["generation"].update(max_new_tokens=12, temperature=1.0)  # seeded: the same answer on every run;
        # sampled, because an untrained model's greedy answers are mostly blanks, and a model tuned on them more so
        params["export"]["test_fraction"] = 0.5  # about 22 held-out tasks of the sample's 45
        params["train"].update(TRAIN)
        params["evaluate"]["limit"] = 10
        params["analyze"].update(bootstrap=200, permutations=2000)
        params["argilla"].update(data_dir=str(argilla_server.data_dir), port=argilla_server.server.port)
        params["annotation"]["dataset"] = "closed-loop"

    edit_params(repo, two_tiny_models)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    run(["dvc", "repro", "push"], repo)
    params = load_params(repo / "params.yaml")
    (added,) = add_annotators(
        resolve(params.argilla), workspace=params.annotation.workspace, usernames=["loop-rater"], store=tmp_path / "a"
    )
    rater = Annotator(argilla_server.url, "loop-rater", added.password or "")
    rate(rater, argilla_server, repo / "data/push.json", better="base")

    exported = run(["dvc", "repro"], repo).stdout  # pull, analyze, export; train and evaluate say they are off
    assert "analyze: base beats other" in exported, exported
    sft_rows = pq.read_table(repo / "data/export/sft/train.parquet").num_rows
    dpo_rows = pq.read_table(repo / "data/export/dpo/train.parquet").num_rows
    assert sft_rows >= 5 and dpo_rows >= 5, (sft_rows, dpo_rows)  # from the ratings: base's answers, base over other
    off = json.loads((repo / "evaluation/metrics.json").read_text())
    assert off == {"evaluated": False, "reason": "train.enabled is false"}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "rated"], repo)

    # SFT: train, then the tuned model answers the held-out tasks and waits for ratings in its own dataset
    first = experiment(repo, "sft", "train.enabled=true", "train.method=sft")
    assert f"train: sft of base (lora) on {sft_rows} tasks: sft 4 steps" in first, first
    assert "no verdict yet" in first, first
    receipt = read_receipt(repo / "data/evaluation/push.json")
    assert receipt.dataset.startswith("code-answers-tuned-vs-base-") and receipt.models == ["tuned", "base"]
    generations = pq.read_table(repo / "data/evaluation/generations.parquet").to_pylist()
    held_out = {g["task_id"] for g in generations}
    assert len(held_out) == 10 and all(in_test_split(t, params.export.seed, 0.5) for t in held_out), "held out"
    answers = {(g["task_id"], g["model"]): g["response"] for g in generations}
    assert any(answers[t, "base"] != answers[t, "tuned"] for t in held_out), "the adapter changes the answers"

    assert rate(rater, argilla_server, repo / "data/evaluation/push.json", better="tuned") == held_out
    rated = experiment(repo, "sft-rated", "train.enabled=true", "train.method=sft")
    assert "Stage 'train' didn't change" in rated and "train: sft" not in rated, "the same model: not trained again"
    assert "tuned beats base by +" in rated and "10 tasks" in rated, rated

    # DPO: another trained model, another dataset; the SFT model's ratings stay where they are
    experiment(repo, "dpo", "train.enabled=true", "train.method=dpo")
    dpo_receipt = read_receipt(repo / "data/evaluation/push.json")
    assert dpo_receipt.dataset != receipt.dataset
    rate(rater, argilla_server, repo / "data/evaluation/push.json", better="base")
    experiment(repo, "dpo-rated", "train.enabled=true", "train.method=dpo")

    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    verdicts = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = rev["data"]["metrics"].get("evaluation/metrics.json", {}).get("data", {})
                verdicts[rev["name"]] = metrics.get("pairwise", {}).get("tuned_vs_base")
    assert verdicts["sft-rated"]["ci_low"] > 0 and verdicts["dpo-rated"]["ci_high"] < 0, verdicts
    diff = json.loads(run(["dvc", "metrics", "diff", "sft-rated", "dpo-rated", "--json"], repo).stdout)
    assert diff["evaluation/metrics.json"]["pairwise.tuned_vs_base.difference"]["diff"] < 0, diff
