"""`python -m stages.generate` as DVC runs it: killed mid-run, failing too often, and with secrets in the environment."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from llm_feedback.artifacts import PROMPTS, TASKS, write_table
from llm_feedback.params import load_params
from llm_feedback.prompts import build_prompts
from llm_feedback.sources import fetch_tasks
from tests.conftest import PROJECT_ROOT
from tests.llm_server import CHAT_PATH, FakeLLMServer

FAKE_OPENAI_KEY = "sk-test-FAKE-0123456789abcdefghij"
FAKE_HF_TOKEN = "hf_FAKEtoken0123456789abcdefghij"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def project(folder: Path, server: FakeLLMServer, limit: int, generate: dict | None = None) -> Path:
    """A folder with params.yaml and the tasks and prompts artifacts, ready for the generate stage."""
    params = {
        "fetch": {"path": str(PROJECT_ROOT / "data/sample/tasks.yaml"), "limit": limit},
        "models": {
            "a": {"backend": "openai", "model": "served", "base_url": f"{server.url}/v1", "api_key_env": "MY_LLM_KEY"}
        },
        "compare": ["a"],
        "generate": {"backoff_initial_s": 0.01, "timeout_s": 5, **(generate or {})},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    loaded = load_params(folder / "params.yaml")
    tasks, _ = fetch_tasks(loaded.fetch)
    write_table(tasks, folder / loaded.paths.tasks, TASKS)
    prompts, _ = build_prompts(tasks, loaded.models, loaded.compare, loaded.format)
    write_table(prompts, folder / loaded.paths.prompts, PROMPTS)
    return folder


def stage_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "MY_LLM_KEY": FAKE_OPENAI_KEY, "HF_TOKEN": FAKE_HF_TOKEN}


def run_generate(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.generate"], cwd=folder, env=stage_env(), capture_output=True, text=True
    )


def cached_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "data/cache/generations.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


@pytest.mark.slow
def test_killed_run_resumes_without_asking_twice(tmp_path: Path, server: FakeLLMServer) -> None:
    server.latency_s = 0.2
    folder = project(tmp_path, server, limit=20, generate={"concurrency": 2})
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.generate"], cwd=folder, env=stage_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while server.count(CHAT_PATH) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "data/generations.parquet").exists()
    saved = cached_rows(folder)
    assert 4 <= saved < 20  # 8 asked, at most 2 in flight, and an answer or two may not be saved yet
    asked_before = server.count(CHAT_PATH, fault=None)

    resumed = run_generate(folder)
    assert resumed.returncode == 0, resumed.stderr
    assert server.count(CHAT_PATH, fault=None) - asked_before == 20 - saved  # only the missing ones
    first = (folder / "data/generations.parquet").read_bytes()
    table = pq.read_table(folder / "data/generations.parquet")
    assert table.num_rows == 20 and table.column("error").null_count == 20

    asked_before = server.count(CHAT_PATH, fault=None)
    again = run_generate(folder)
    assert again.returncode == 0
    assert server.count(CHAT_PATH, fault=None) == asked_before
    assert (folder / "data/generations.parquet").read_bytes() == first
    assert "20 from cache, 0 sent" in again.stdout


def test_too_many_failures_fail_the_stage_after_saving_everything(tmp_path: Path, server: FakeLLMServer) -> None:
    server.fail_marker = {"`is_palindrome`": "400"}
    folder = project(tmp_path, server, limit=3, generate={"max_error_rate": 0.2})
    result = run_generate(folder)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("generate: a: 2 ok, 1 failed, ")
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("generate: error: a: 1 of 3 requests failed (33% > generate.max_error_rate 20%; ")
    assert "first error: HTTP 400: " in error
    table = pq.read_table(folder / "data/generations.parquet")
    assert table.column("response").null_count == 1
    assert cached_rows(folder) == 2


def test_secrets_reach_the_server_and_nothing_else(tmp_path: Path, server: FakeLLMServer) -> None:
    server.script = ["500"]
    folder = project(tmp_path, server, limit=3, generate={"progress_every_s": 0.001})
    result = run_generate(folder)
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {FAKE_OPENAI_KEY}"
    assert "generate: a: 3/3 (100%), 0 failed" in result.stderr  # plain progress lines when not on a terminal
    for secret in (FAKE_OPENAI_KEY, FAKE_HF_TOKEN):
        assert secret not in result.stdout + result.stderr
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
