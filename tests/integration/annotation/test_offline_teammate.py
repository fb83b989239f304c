"""A teammate with the repository and the DVC remote but no access to the annotation server, as the README's
"Without the annotation server" tells it: `dvc pull`, then `LLM_FEEDBACK_ANNOTATION_OFFLINE=1 dvc repro`. push and
pull contact no server and keep what `dvc pull` brought, analyze and export come out as the owner's, and nothing
changes in git; a missing artifact stops the stage with one line that says to run `dvc pull`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.annotation.connection import OFFLINE_VARIABLE
from llm_feedback.annotation.receipt import Receipt, read_receipt
from llm_feedback.artifacts import ANNOTATIONS
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.fake_llm_server import FakeLLMServer
from llm_feedback.testing.ports import free_port
from tests.integration.annotation.annotating import Annotator
from tests.project import copy_project, edit_params, make_project, run, run_stage

OFFLINE = {OFFLINE_VARIABLE: "1"}
ANNOTATED = 12  # records the owner's annotator rates


def dvc(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dvc <args>` from the project's venv with `env` added; the caller judges the exit code."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["dvc", *args], cwd=cwd, env={**os.environ, "PATH": path, **env}, capture_output=True, text=True, check=False
    )


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def owner_project(tmp_path: Path, server_venv: Path, port: int) -> Path:
    """The owner: a fresh clone with the shipped params (models on the test LLM server, the embedded server on
    `port`), run to push, annotated in part, run to export, shared through a local DVC remote and committed. Its
    server is stopped on return."""
    shipped = copy_project(tmp_path / "shipped")
    run(["git", "add", "-A"], shipped)
    run(["git", "commit", "-qm", "shipped"], shipped)
    owner = tmp_path / "owner"
    run(["git", "clone", "-q", str(shipped), str(owner)], tmp_path)
    with FakeLLMServer() as llm:

        def point_models_at_the_test_server(params: dict) -> None:
            assert params["argilla"]["url"] == "local" and params["argilla"]["data_dir"] == ".argilla"
            for name in params["compare"]:
                params["models"][name] = {"backend": "openai", "model": name, "base_url": f"{llm.url}/v1"}
            params["argilla"]["port"] = port

        edit_params(owner, point_models_at_the_test_server)
        (owner / ".argilla").mkdir()
        (owner / ".argilla" / "venv").symlink_to(server_venv)  # borrowed: building it takes a minute
        try:
            pushed = run(["dvc", "repro", "push"], owner)
            assert "push: 44 records in llm-feedback/code-answers" in pushed.stdout, pushed.stdout
            receipt = read_receipt(owner / "data" / "push.json")
            credentials = json.loads((owner / ".argilla" / "credentials.json").read_text())
            added = run(["llm-feedback", "annotators", "add", "rater"], owner).stdout
            rater = Annotator(receipt.url, "rater", added.split("rater: password ")[1].split()[0])
            better, worse = receipt.models
            for number, record in enumerate(owner_records(receipt.url, credentials["api_key"], receipt.dataset_id)):
                if number == ANNOTATED:
                    break
                shown = receipt.blinding[record["external_id"]]["models"]
                scores = {better: 5 + number % 3, worse: 2 + number % 2}
                rater.respond(
                    record["id"], "submitted", {f"score_response_{k}": scores[m] for k, m in enumerate(shown, 1)}
                )
            annotated = run(["dvc", "repro"], owner)
            assert f"pull: {ANNOTATED} of 44 records annotated" in annotated.stdout, annotated.stdout
            assert f"analyze: {better} beats {worse}" in annotated.stdout, annotated.stdout
        finally:
            stop = [sys.executable, "-m", "llm_feedback.cli", "server", "stop"]
            subprocess.run(stop, cwd=owner, check=False, capture_output=True)
    run(["dvc", "remote", "add", "-d", "team", str(tmp_path / "dvc-remote")], owner)
    run(["dvc", "push"], owner)
    run(["git", "add", "-A"], owner)
    run(["git", "commit", "-qm", "annotated, shared through the DVC remote"], owner)
    return owner


@pytest.mark.slow
def test_a_teammate_without_the_server_reproduces_analyze_and_export_from_the_dvc_remote(
    tmp_path: Path, server_venv: Path
) -> None:
    port = free_port()
    owner = owner_project(tmp_path, server_venv, port)
    assert refused(port), "the owner's server is stopped: the teammate cannot reach it"

    teammate = tmp_path / "teammate"
    run(["git", "clone", "-q", str(owner), str(teammate)], tmp_path)
    run(["dvc", "pull"], teammate)
    lock = (teammate / "dvc.lock").read_bytes()
    pulled = (teammate / "data" / "annotations.parquet").read_bytes()
    receipt = (teammate / "data" / "push.json").read_bytes()

    repro = dvc(["repro"], teammate, OFFLINE)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    out = repro.stdout
    assert (
        f"push: annotation server not contacted ({OFFLINE_VARIABLE}=1): kept data/push.json as it is "
        f"(44 records in llm-feedback/code-answers at http://127.0.0.1:{port}; nothing published)"
    ) in out, out
    assert (
        f"pull: annotation server not contacted ({OFFLINE_VARIABLE}=1): kept data/annotations.parquet as it is "
        f"({ANNOTATED * 2} rows; {ANNOTATED} records annotated, 1 annotators)"
    ) in out, out
    for stage in ("fetch", "format", "generate", "judge", "execute", "analyze", "export"):
        assert f"Stage '{stage}' didn't change, skipping" in out, out
    assert (teammate / "data" / "annotations.parquet").read_bytes() == pulled
    assert (teammate / "data" / "push.json").read_bytes() == receipt
    assert (teammate / "dvc.lock").read_bytes() == lock
    assert run(["git", "status", "--porcelain"], teammate).stdout == "", "same artifacts, same dvc.lock"
    assert not (teammate / ".argilla").exists() and refused(port), "no server was started or reached"

    # analyze and export rebuilt from the pulled artifacts come out as the owner's, byte for byte
    rebuilt = dvc(["repro", "--force", "--single-item", "analyze", "export"], teammate, OFFLINE)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "Running stage 'analyze'" in rebuilt.stdout and "Running stage 'export'" in rebuilt.stdout
    assert (teammate / "metrics.json").read_bytes() == (owner / "metrics.json").read_bytes()
    assert tree(teammate / "data" / "export") == tree(owner / "data" / "export")
    assert tree(teammate / "data" / "export"), "the owner's annotations make training data"
    assert run(["git", "status", "--porcelain"], teammate).stdout == ""

    # without the artifact (no `dvc pull` of it), pull stops with one line and writes nothing
    (teammate / "data" / "annotations.parquet").unlink()
    missing = dvc(["repro"], teammate, OFFLINE)
    assert missing.returncode != 0
    errors = [line for line in missing.stderr.splitlines() if line.startswith("pull: ")]
    assert errors == [
        f"pull: error: data/annotations.parquet: not found, and with {OFFLINE_VARIABLE}=1 no annotation server is "
        "contacted: run `dvc pull` first"
    ], missing.stderr
    assert "Running stage 'analyze'" not in missing.stdout
    assert not (teammate / "data" / "annotations.parquet").exists()
    assert (teammate / "dvc.lock").read_bytes() == lock
    assert run(["git", "status", "--porcelain"], teammate).stdout == ""

    # an experiment on analyze's params reruns analyze (export only if analyze's scores change), and push and pull
    # still keep their artifacts
    run(["dvc", "checkout", "data/annotations.parquet"], teammate)
    experiment = dvc(["exp", "run", "-S", "analyze.aggregate=median"], teammate, OFFLINE)
    assert experiment.returncode == 0, experiment.stdout + experiment.stderr
    for line in ("push: annotation server not contacted", "pull: annotation server not contacted", "analyze: "):
        assert line in experiment.stdout, experiment.stdout
    assert (teammate / "data" / "annotations.parquet").read_bytes() == pulled
    assert (teammate / "data" / "push.json").read_bytes() == receipt
    assert not (teammate / ".argilla").exists() and refused(port), "no server was started or reached"


def offline_project(folder: Path, **inputs: pa.Table) -> Path:
    """A project whose argilla.url points at a closed port: any attempt to reach it would fail."""
    params = {
        "argilla": {"url": f"http://127.0.0.1:{free_port()}"},
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in ("a", "b")},
        "compare": ["a", "b"],
    }
    return make_project(folder, params=params, inputs=inputs)


def annotation_row() -> dict:
    return {
        "record_id": "t1",
        "task_id": "t1",
        "annotator": "rater",
        "model": "a",
        "position": 1,
        "response_sha": "0" * 16,
        "score": 6,
        "status": "submitted",
        "to_correct": None,
        "corrected_response": None,
        "comments": None,
        "updated_at": datetime(2025, 1, 1, tzinfo=UTC),
        "problem": None,
    }


def test_offline_push_and_pull_keep_their_artifacts_byte_for_byte(tmp_path: Path) -> None:
    folder = offline_project(
        tmp_path / "p", annotations=pa.Table.from_pylist([annotation_row()], schema=ANNOTATIONS.schema)
    )
    Receipt(
        url="https://argilla.example.invalid",
        workspace="llm-feedback",
        dataset="code-answers",
        dataset_id="d1",
        models=["a", "b"],
        records=1,
        settings_hash="s",
        content_hash="c",
        blinding={"t1": {"task_id": "t1", "models": ["a", "b"]}},
    ).write(folder / "data" / "push.json")
    before = tree(folder)

    pushed = run_stage("push", folder, env=OFFLINE)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == (
        f"push: annotation server not contacted ({OFFLINE_VARIABLE}=1): kept data/push.json as it is (1 records in "
        "llm-feedback/code-answers at https://argilla.example.invalid; nothing published)\n"
    )
    pulled = run_stage("pull", folder, env=OFFLINE)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == (
        f"pull: annotation server not contacted ({OFFLINE_VARIABLE}=1): kept data/annotations.parquet as it is "
        "(1 rows; 1 records annotated, 1 annotators)\n"
    )
    assert tree(folder) == before


@pytest.mark.parametrize(("stage", "artifact"), [("push", "data/push.json"), ("pull", "data/annotations.parquet")])
def test_offline_without_the_artifact_says_to_run_dvc_pull(tmp_path: Path, stage: str, artifact: str) -> None:
    folder = offline_project(tmp_path / "p")
    before = tree(folder)
    result = run_stage(stage, folder, env=OFFLINE)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{stage}: error: {artifact}: not found, and with {OFFLINE_VARIABLE}=1 no annotation server is contacted: "
        "run `dvc pull` first\n"
    )
    assert tree(folder) == before


@pytest.mark.parametrize("value", ["true", "2"])
def test_an_offline_value_other_than_1_or_0_is_refused(tmp_path: Path, value: str) -> None:
    folder = offline_project(tmp_path / "p")
    result = run_stage("pull", folder, env={OFFLINE_VARIABLE: value})
    assert result.returncode == 2
    assert result.stderr == (
        f"pull: error: {OFFLINE_VARIABLE} must be 1 (push and pull keep their artifacts and contact no annotation "
        "server) or 0 (or unset)\n"
    )
    assert value not in result.stderr.replace(OFFLINE_VARIABLE, "")
