"""The README's main command as a new user meets it: a fresh clone, the shipped params.yaml (its relative
`argilla.data_dir: .argilla`), `llm-feedback server start`, then `dvc repro` up to push; then an annotator rates
every record in the UI's API and `dvc repro` brings back the verdict. Only the models are pointed at the test LLM
server (nothing is downloaded) and the port is a free one."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from llm_feedback.annotation.dataset_settings import shown_answer
from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.fake_llm_server import FakeLLMServer
from llm_feedback.testing.ports import free_port
from tests.integration.annotation.annotating import Annotator
from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow


def test_a_fresh_clone_starts_its_server_and_pushes_with_the_shipped_params(tmp_path: Path, server_venv: Path) -> None:
    shipped = copy_project(tmp_path / "shipped")
    run(["git", "add", "-A"], shipped)
    run(["git", "commit", "-qm", "shipped"], shipped)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(shipped), str(clone)], tmp_path)
    port = free_port()
    with FakeLLMServer() as llm:

        def point_models_at_the_test_server(params: dict) -> None:
            assert params["argilla"]["data_dir"] == ".argilla" and params["argilla"]["url"] == "local"
            for name in params["compare"]:
                params["models"][name] = {"backend": "openai", "model": name, "base_url": f"{llm.url}/v1"}
            params["argilla"]["port"] = port

        edit_params(clone, point_models_at_the_test_server)
        # The server's venv takes a minute to build; the clone borrows the one the test session built.
        (clone / ".argilla").mkdir()
        (clone / ".argilla" / "venv").symlink_to(server_venv)
        try:
            started = run(["llm-feedback", "server", "start"], clone)
            assert f"annotation server running at http://127.0.0.1:{port}" in started.stdout
            assert stat.S_IMODE((clone / ".argilla").stat().st_mode) == 0o700
            files = [p for p in (clone / ".argilla").iterdir() if p.is_file() and not p.is_symlink()]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
            assert "server.log" in modes and set(modes.values()) == {0o600}, modes
            credentials = json.loads((clone / ".argilla" / "credentials.json").read_text())

            pushed = run(["dvc", "repro", "push"], clone)
            assert "generate: 88 generations" in pushed.stdout, pushed.stdout
            assert "push: 44 records in llm-feedback/code-answers" in pushed.stdout, pushed.stdout
            receipt = read_receipt(clone / "data" / "push.json")
            assert receipt.url == f"http://127.0.0.1:{port}"
            shown = owner_records(receipt.url, credentials["api_key"], receipt.dataset_id)
            assert len(shown) == 44 and all(
                shown_answer(r["fields"], 1) and shown_answer(r["fields"], 2) for r in shown
            )
            before = (clone / "data" / "push.json").read_bytes()
            again = run(["dvc", "repro", "push"], clone).stdout  # push always runs: only the server knows what is due
            assert (
                "push: 44 records in llm-feedback/code-answers" in again and "(0 new; 0 updated; 44 unchanged)" in again
            )
            assert (clone / "data" / "push.json").read_bytes() == before

            added = run(["llm-feedback", "annotators", "add", "rater"], clone).stdout
            password = added.split("rater: password ")[1].split()[0]
            rater = Annotator(receipt.url, "rater", password)
            better, worse = receipt.models
            for number, record in enumerate(shown):
                shown_models = receipt.blinding[record["external_id"]]["models"]
                scores = {better: 5 + number % 3, worse: 2 + number % 2}
                rater.respond(
                    record["id"],
                    "submitted",
                    {f"score_response_{k}": scores[m] for k, m in enumerate(shown_models, 1)},
                )
            annotated = run(["dvc", "repro"], clone)
            gap = sum((5 + n % 3) - (2 + n % 2) for n in range(len(shown))) / len(shown)
            verdict = f"analyze: {better} beats {worse} by +{gap:.2f} points (95% CI +3."
            assert verdict in annotated.stdout, annotated.stdout
            assert "p < 0.001, 44 tasks); 44 of 44 tasks scored" in annotated.stdout
            metrics = json.loads((clone / "metrics.json").read_text())
            assert metrics["pairwise"][f"{better}_vs_{worse}"]["decided"] is True
            assert metrics["verdict"] in annotated.stdout
            report = (clone / "reports" / "report.md").read_text().splitlines()
            assert report[2] == f"**{metrics['verdict']}**"
        finally:
            subprocess.run(
                [sys.executable, "-m", "llm_feedback.cli", "server", "stop"],
                cwd=clone,
                check=False,
                capture_output=True,
            )
