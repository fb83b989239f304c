"""The whole flow through `dvc repro`, as a user runs it: fetch to export against the embedded server. Annotations
arrive and only pull, analyze and export rerun; `dvc metrics diff` shows the scores move; with nothing new, pull's
output is byte-identical, analyze and export are skipped, and nothing changes in git."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.params import load_params
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.fake_llm_server import FakeLLMServer, canned_answer
from tests.integration.annotation.annotating import Annotator
from tests.integration.annotation.conftest import RunningServer
from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow


def test_dvc_repro_runs_the_flow_and_pull_changes_only_with_new_annotations(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    with FakeLLMServer() as llm:
        verdict = {"comments_and_docstrings": 1, "test_example": 0, "runs_correctly": 0, "total": 1, "rationale": "-"}
        llm.answer = lambda model, text: json.dumps(verdict) if "<answer>" in text else canned_answer(model, text)
        repo = copy_project(tmp_path / "project")

        def configure(params: dict) -> None:
            params["fetch"]["limit"] = 4
            params["models"] = {
                m: {"backend": "openai", "model": m, "base_url": f"{llm.url}/v1"} for m in ("a", "b", "j")
            }
            params["compare"] = ["a", "b"]
            params["judge"].update(enabled=True, model="j")
            params["execute"]["enabled"] = True
            params["argilla"].update(data_dir=str(argilla_server.data_dir), port=argilla_server.server.port)
            params["annotation"]["dataset"] = "dvc-flow"

        edit_params(repo, configure)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "project"], repo)

        first = run(["dvc", "repro"], repo)
        for line in (
            "generate: 8 generations",
            "judge: j scored 8 of 8 answers",
            "execute: a: 0 pass, 4 fail",
            "push: 4 records in llm-feedback/dvc-flow",
            "pull: 0 of 4 records annotated",
            "analyze: no verdict yet: no task has current scores for every compared model; 0 of 4 tasks scored",
            "export: SFT 0 train + 0 test",
        ):
            assert line in first.stdout, first.stdout
        assert "No submitted scores yet" in (repo / "reports/report.md").read_text()
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "pushed"], repo)

        receipt = read_receipt(repo / "data/push.json")
        shown = owner_records(argilla_server.url, argilla_server.api_key, receipt.dataset_id)
        assert all(r["metadata"]["execution_response_1"] == "fail" for r in shown), "annotators see the execution"
        params = load_params(repo / "params.yaml")
        added = add_annotators(
            resolve(params.argilla),
            workspace=params.annotation.workspace,
            usernames=["flow-rater"],
            store=tmp_path / "a.json",
        )
        rater = Annotator(argilla_server.url, "flow-rater", added[0].password or "")
        for record in owner_records(argilla_server.url, argilla_server.api_key, receipt.dataset_id)[:2]:
            rater.respond(record["id"], "submitted", {"score_response_1": 6, "score_response_2": 1})

        second = run(["dvc", "repro"], repo)
        assert "Running stage 'push'" in second.stdout, "push always runs: a next round may be due"
        assert (
            "push: 4 records in llm-feedback/dvc-flow" in second.stdout
            and "(0 new; 0 updated; 4 unchanged)" in second.stdout
        )
        assert "pull: 2 of 4 records annotated; responses: 2 submitted; 1 annotators" in second.stdout
        assert "analyze: not decided: a - b = " in second.stdout and "on 2 tasks" in second.stdout
        assert "; 2 of 4 tasks scored" in second.stdout
        annotations = pq.read_table(repo / "data/annotations.parquet")
        assert annotations.num_rows == 4 and set(annotations.column("annotator").to_pylist()) == {"flow-rater"}
        shown_first = {r["model"] for r in annotations.to_pylist() if r["position"] == 1}
        metrics = json.loads((repo / "metrics.json").read_text())
        for model in ("a", "b"):
            scores = [6 if r["position"] == 1 else 1 for r in annotations.to_pylist() if r["model"] == model]
            assert metrics["models"][model]["mean"] == sum(scores) / len(scores), (shown_first, metrics["models"])
        assert metrics["judge"]["pairs"] == 4 and metrics["execution"]["models"]["a"]["pass_rate"] == 0.0
        diff = run(["dvc", "metrics", "diff", "--json"], repo).stdout
        assert json.loads(diff)["metrics.json"]["models.a.mean"]["old"] is None
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "annotated"], repo)

        third = run(["dvc", "repro"], repo)
        assert "Running stage 'pull'" in third.stdout
        assert "Stage 'analyze' didn't change, skipping" in third.stdout
        assert "Stage 'export' didn't change, skipping" in third.stdout
        assert run(["git", "status", "--porcelain"], repo).stdout == "", "nothing new: same artifacts, same dvc.lock"
