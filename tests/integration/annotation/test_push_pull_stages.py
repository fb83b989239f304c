"""The push and pull stages as DVC runs them (`python -m stages.push`), the annotators command, a push killed half
way, and a private-Space-style server that wants `Authorization: Bearer $HF_TOKEN`."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pyarrow.parquet as pq
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.dataset_settings import shown_answer
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.errors import PipelineError
from llm_feedback.testing.argilla_records import owner_records
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import (
    Annotator,
    make_generations,
    make_tasks,
    params_for,
    writer_of,
)
from tests.integration.annotation.conftest import RunningServer
from tests.project import make_project, run_stage, start_stage

MODELS = ["alpha", "beta"]
FAKE_HF_TOKEN = "hf_FAKEspaceToken0123456789abcdef"


def project(folder: Path, argilla: dict, tasks: int, **annotation) -> Path:
    table = make_tasks(tasks)
    params = {
        "argilla": argilla,
        "annotation": {
            "guidelines": str(PROJECT_ROOT / "annotation/guidelines.md"),
            **annotation,
        },
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
        "compare": MODELS,
    }
    return make_project(folder, params=params, inputs={"tasks": table, "generations": make_generations(table, MODELS)})


def local(server: RunningServer) -> dict:
    """Params for the embedded server: `url: local` with its folder and port."""
    return {"url": "local", "data_dir": str(server.data_dir), "port": server.server.port}


def dataset_total(server: RunningServer, name: str) -> int | None:
    headers = {"X-Argilla-Api-Key": server.api_key}
    for dataset in httpx.get(f"{server.url}/api/v1/me/datasets", headers=headers).json()["items"]:
        if dataset["name"] == name:
            page = httpx.get(
                f"{server.url}/api/v1/datasets/{dataset['id']}/records", headers=headers, params={"limit": 1}
            )
            return int(page.json()["total"])
    return None


def test_push_and_pull_stages_on_the_embedded_server_keep_its_key_out(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    folder = project(tmp_path / "p", local(argilla_server), 6, dataset="stage-local")
    pushed = run_stage("push", folder, env={"HF_TOKEN": FAKE_HF_TOKEN})
    assert pushed.returncode == 0, pushed.stderr
    assert (
        f"push: 6 records in llm-feedback/stage-local at {argilla_server.url} (6 new; 0 updated; 0 unchanged)"
        in pushed.stdout
    )
    receipt = json.loads((folder / "data/push.json").read_text())
    assert receipt["url"] == argilla_server.url and receipt["records"] == 6 and len(receipt["blinding"]) == 6

    pulled = run_stage("pull", folder)
    assert pulled.returncode == 0, pulled.stderr
    assert "pull: 0 of 6 records annotated" in pulled.stdout
    first = (folder / "data/annotations.parquet").read_bytes()
    assert run_stage("pull", folder).returncode == 0
    assert (folder / "data/annotations.parquet").read_bytes() == first, "an unchanged server gives the same bytes"

    again = run_stage("push", folder)
    assert "(0 new; 0 updated; 6 unchanged)" in again.stdout
    for text in [
        pushed.stdout,
        pushed.stderr,
        pulled.stdout,
        pulled.stderr,
        *(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.suffix != ".parquet"),
    ]:
        assert argilla_server.api_key not in text and argilla_server.credentials.password not in text
        assert FAKE_HF_TOKEN not in text
    assert argilla_server.api_key.encode() not in (folder / "data/annotations.parquet").read_bytes()


def test_a_push_killed_half_way_completes_on_rerun_without_duplicates(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    folder = project(tmp_path / "p", local(argilla_server), 3000, dataset="stage-killed", batch_size=100)
    process = start_stage("push", folder)
    deadline = time.monotonic() + 120
    while (dataset_total(argilla_server, "stage-killed") or 0) < 300:
        assert process.poll() is None, "the push finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    part = dataset_total(argilla_server, "stage-killed")
    assert part is not None and 300 <= part < 3000
    assert not (folder / "data/push.json").exists(), "no receipt for a push that did not finish"

    rerun = run_stage("push", folder)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({3000 - part} new; 0 updated; {part} unchanged)" in rerun.stdout
    receipt = json.loads((folder / "data/push.json").read_text())
    headers = {"X-Argilla-Api-Key": argilla_server.api_key}
    ids = []
    for offset in range(0, 3000, 1000):
        page = httpx.get(
            f"{argilla_server.url}/api/v1/datasets/{receipt['dataset_id']}/records",
            headers=headers,
            params={"offset": offset, "limit": 1000},
        ).json()
        ids += [item["external_id"] for item in page["items"]]
    assert len(ids) == len(set(ids)) == 3000 == receipt["records"]


def test_annotators_add_creates_logins_shown_once_and_kept_private(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    folder = project(tmp_path / "p", local(argilla_server), 2, dataset="stage-annotators")
    assert run_stage("push", folder).returncode == 0
    command = [str(Path(sys.executable).parent / "llm-feedback"), "annotators", "add", "rater-1", "rater-2"]
    first = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    passwords = dict(line.split(": password ") for line in first.stdout.splitlines() if ": password " in line)
    assert set(passwords) == {"rater-1", "rater-2"}
    store = argilla_server.data_dir / "annotators.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert json.loads(store.read_text())[argilla_server.url]["rater-1"] == passwords["rater-1"]

    rater = Annotator(argilla_server.url, "rater-1", passwords["rater-1"])
    visible = [d["name"] for d in rater.client.get("/api/v1/me/datasets").json()["items"]]
    assert "stage-annotators" in visible, "the annotator sees the workspace's datasets"

    second = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert "rater-1: exists, password unchanged (already in the workspace)" in second.stdout
    assert passwords["rater-1"] not in second.stdout
    bad = subprocess.run(command[:-2] + ["Rater"], cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "annotator name 'Rater'" in bad.stderr


class _BearerProxy(BaseHTTPRequestHandler):
    """Forwards to Argilla only requests that carry the Space's bearer token, as a private HF Space does."""

    upstream = ""
    seen_tokens: ClassVar[list[str]] = []

    def _forward(self) -> None:
        auth = self.headers.get("Authorization", "")
        type(self).seen_tokens.append(auth)
        if auth != f"Bearer {FAKE_HF_TOKEN}":
            self.send_response(404)
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in {"host", "authorization", "content-length"}
        }
        response = httpx.request(self.command, self.upstream + self.path, headers=headers, content=body, timeout=60)
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in {"content-length", "transfer-encoding", "content-encoding", "connection"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def private_space(argilla_server: RunningServer) -> Iterator[str]:
    _BearerProxy.upstream, _BearerProxy.seen_tokens = argilla_server.url, []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _BearerProxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()


def test_a_private_space_gets_the_hf_token_as_bearer(
    argilla_server: RunningServer, private_space: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    tasks = make_tasks(3)
    params = params_for(private_space, "space-dataset", MODELS)
    with pytest.raises(PipelineError, match=r"^http://127.0.0.1:\d+ answers, but not as Argilla.*needs HF_TOKEN$"):
        # auto: a loopback host is not a Space, no token sent
        push(params, tasks=tasks, generations=make_generations(tasks, MODELS))
    assert set(_BearerProxy.seen_tokens) == {""}

    params = params.model_copy(update={"argilla": params.argilla.model_copy(update={"send_hf_token": "always"})})
    pushed = push(params, tasks=tasks, generations=make_generations(tasks, MODELS))
    assert pushed.created == 3
    assert pull(params, receipt=pushed.receipt).records == 3
    assert FAKE_HF_TOKEN not in json.dumps(pushed.receipt.__dict__)


def tamper(server: RunningServer, dataset: str, record_id: str, path: str, value: object) -> None:
    """Write a response value straight into the server's database, as a broken client, an older server or a hand edit
    could leave it: Argilla's API would refuse it, but the server returns whatever its database holds."""
    with sqlite3.connect(server.data_dir / "argilla.db", timeout=30) as db:
        changed = db.execute(
            'UPDATE responses SET "values" = json_set("values", ?, json(?)) WHERE record_id IN (SELECT id FROM '
            "records WHERE external_id = ? AND dataset_id IN (SELECT id FROM datasets WHERE name = ?))",
            (path, json.dumps(value), record_id, dataset),
        ).rowcount
    assert changed == 1


@pytest.mark.slow
def test_values_outside_the_settings_never_reach_the_metrics_nor_the_training_data(
    argilla_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project(tmp_path / "p", local(argilla_server), 4, dataset="stage-bad-values")
    assert run_stage("push", folder).returncode == 0
    dataset_id = json.loads((folder / "data/push.json").read_text())["dataset_id"]
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    params = params_for(argilla_server.url, "unused", MODELS)
    add_annotators(
        resolve(params.argilla),
        workspace=params.annotation.workspace,
        usernames=["rater-values"],
        store=tmp_path / "a.json",
    )
    password = json.loads((tmp_path / "a.json").read_text())[argilla_server.url]["rater-values"]
    rater = Annotator(argilla_server.url, "rater-values", password)
    records = owner_records(argilla_server.url, argilla_server.api_key, dataset_id)
    wanted = {"alpha": 6, "beta": 2}
    for record in records:
        shown = [writer_of(shown_answer(record["fields"], p)) for p in (1, 2)]
        rater.respond(record["id"], "submitted", {f"score_response_{p}": wanted[m] for p, m in enumerate(shown, 1)})
    tamper(argilla_server, "stage-bad-values", records[0]["external_id"], "$.score_response_1.value", 9)
    tamper(argilla_server, "stage-bad-values", records[1]["external_id"], "$.score_response_2.value", 1_000_000)
    tamper(argilla_server, "stage-bad-values", records[2]["external_id"], "$.to_correct", {"value": "zzz"})

    pulled = run_stage("pull", folder)
    assert pulled.returncode == 0, pulled.stderr
    assert (
        "; 3 responses will not count, they hold a value outside the dataset's settings (column problem; first: "
        f"record {records[0]['external_id']} by rater-values: score_response_1 is 9, not a score on the 0-7 scale)"
        in pulled.stdout
    )
    rows = pq.read_table(folder / "data/annotations.parquet").to_pylist()
    assert len(rows) == 8 and all(r["score"] is None or 0 <= r["score"] <= 7 for r in rows)
    assert {r["record_id"] for r in rows if r["problem"]} == {r["external_id"] for r in records[:3]}
    assert {r["to_correct"] for r in rows} == {None}

    analyzed = run_stage("analyze", folder)
    assert analyzed.returncode == 0, analyzed.stderr
    assert "3 responses left out for a value outside the dataset's settings" in analyzed.stdout
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["counts"]["invalid_responses"] == 3 and metrics["counts"]["scored_tasks"] == 1
    assert (
        "\n- 3 responses left out for a value outside the dataset's settings (first: record "
        in (folder / "reports/report.md").read_text()
    )
    assert {m: (v["mean"], v["scores"]) for m, v in metrics["models"].items()} == {"alpha": (6.0, 1), "beta": (2.0, 1)}

    exported = run_stage("export", folder)
    assert exported.returncode == 0, exported.stderr
    sft = [row for path in (folder / "data/export/sft").glob("*.parquet") for row in pq.read_table(path).to_pylist()]
    assert [(row["task_id"], row["model"], row["score"]) for row in sft] == [(records[3]["external_id"], "alpha", 6.0)]


def test_a_workspace_name_argilla_refuses_is_one_line_before_the_server_is_asked(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    folder = project(tmp_path / "p", local(argilla_server), 2, dataset="stage-workspace", workspace="Code Review")
    pushed = run_stage("push", folder)
    assert pushed.returncode == 2
    assert pushed.stderr.splitlines() == [
        (
            "push: error: params.yaml: annotation.workspace: 'Code Review' is not a name "
            "Argilla takes: use letters, digits, '-' and '_'"
        )
    ]
    assert dataset_total(argilla_server, "stage-workspace") is None and not (folder / "data/push.json").exists()
