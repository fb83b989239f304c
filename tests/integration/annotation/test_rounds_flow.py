"""Annotation in rounds through `dvc repro`, as a team runs it: the judge scores every answer, push publishes round
1 chosen where the judge is unsure, annotators rate it through the API, and each `dvc repro` after that publishes the
next round, until push finds every pair decided and stops; with nothing new, a run changes nothing in git."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
ROUND = re.compile(
    r"push: round (\d+)(?: of (?:at most )?\d+: (\d+) records published|: (\d+) of (\d+) records done; (.+?);)"
)


def judged(model: str, text: str) -> str:
    """The judge: a's answers 6, b's 1 to 5 by the task (so it is surer of some comparisons than others)."""
    if "<answer>" not in text:
        return canned_answer(model, text)
    total = 6 if "from a." in text else 1 + len(text) % 5
    runs = 3 if total >= 3 else 0
    comments = min(2, total - runs)
    parts = {"comments_and_docstrings": comments, "test_example": total - runs - comments, "runs_correctly": runs}
    return json.dumps({**parts, "total": total, "rationale": "-"})


def test_dvc_repro_publishes_round_after_round_until_push_finds_every_pair_decided(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    with FakeLLMServer() as llm:
        llm.answer = judged
        repo = copy_project(tmp_path / "project")

        def configure(params: dict) -> None:
            params["fetch"]["limit"] = 24
            params["models"] = {m: {"backend": "openai", "model": m, "base_url": f"{llm.url}/v1"} for m in "abj"}
            params["compare"] = ["a", "b"]
            params["judge"].update(enabled=True, model="j")
            params["argilla"].update(data_dir=str(argilla_server.data_dir), port=argilla_server.server.port)
            params["annotation"].update(dataset="rounds-flow", round_size=6, select="active")

        edit_params(repo, configure)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "project"], repo)
        params = load_params(repo / "params.yaml")
        (added,) = add_annotators(
            resolve(params.argilla),
            workspace=params.annotation.workspace,
            usernames=["flow-rounds"],
            store=tmp_path / "a.json",
        )
        rater = Annotator(argilla_server.url, "flow-rounds", added.password or "")

        lines, published, analyzed = [], [], []
        for _ in range(6):
            output = run(["dvc", "repro"], repo).stdout
            assert "Running stage 'push'" in output, "push runs on every repro"
            (line,) = [m for m in ROUND.finditer(output)]
            lines.append(line.group(0))
            analyzed.append(next(x for x in output.splitlines() if x.startswith("analyze: ")))
            receipt = read_receipt(repo / "data/push.json")
            if line.group(2) is None:
                break
            published.append(int(line.group(2)))
            assert receipt.current_round == len(published) and receipt.records == sum(published)
            assert analyzed[-1].startswith(f"analyze: next round: {published[-1]} records (round {len(published)});")
            for record in owner_records(argilla_server.url, argilla_server.api_key, receipt.dataset_id):
                if not record["responses"]:  # a's answer is Response 1 or 2: a 6 or 7, b a 1 or 2
                    first = receipt.blinding[record["external_id"]]["models"][0]
                    a, b = 6 + len(record["id"]) % 2, 1 + int(record["id"][0], 16) % 2
                    rater.respond(
                        record["id"],
                        "submitted",
                        {"score_response_1": a if first == "a" else b, "score_response_2": b if first == "a" else a},
                    )
            run(["git", "add", "-A"], repo)
            run(["git", "commit", "-qm", f"round {len(published)}"], repo)
        assert lines[-1].endswith("records done; decided: stop annotating;"), lines
        assert analyzed[-1].startswith("analyze: decided: stop annotating (judge-assisted); a beats b by +"), analyzed
        metrics = json.loads((repo / "metrics.json").read_text())
        assert metrics["rounds"]["decided"] and metrics["rounds"]["pairs"]["a_vs_b"]["ci_low"] > 0
        assert metrics["rounds"]["judge_assisted"] and metrics["rounds"]["looked_at_round"] == receipt.current_round
        assisted = metrics["judge"]["assisted"]
        assert assisted["human_tasks"] == receipt.records and assisted["judge_tasks"] == 24, assisted
        assert 10 <= receipt.records < 24, "decided before every task is published, on at least ten tasks"
        assert len(published) >= 2 and all(
            p.startswith(f"push: round {n} of at most 4: ") for n, p in enumerate(lines[:-1], 1)
        )
        chances = receipt.chances()
        assert len({since[0] for _, since in chances.values()}) > 1, "active: the judge's uncertainty sets the chances"

        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "decided"], repo)
        again = run(["dvc", "repro"], repo).stdout
        assert lines[-1] in again and "Stage 'analyze' didn't change, skipping" in again
        assert run(["git", "status", "--porcelain"], repo).stdout == "", "nothing new: same receipt, same dvc.lock"
