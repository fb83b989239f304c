"""`python -m stages.generate` as DVC runs it: killed, failing, fed malformed replies, with keys echoed or missing, and
with a corrupt request cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_feedback.params import Params
from llm_feedback.prompts import build_prompts
from llm_feedback.sources import fetch_tasks
from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer
from tests.conftest import PROJECT_ROOT
from tests.project import make_project, run_stage, start_stage

FAKE_OPENAI_KEY = "sk-test-FAKE-0123456789abcdefghij"
FAKE_HF_TOKEN = "hf_FAKEtoken0123456789abcdefghij"


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
    loaded = Params.model_validate(params)
    tasks = fetch_tasks(loaded.fetch).table
    prompts = build_prompts(tasks, models=loaded.models, compare=loaded.compare, params=loaded.format).prompts
    return make_project(folder, params=params, inputs={"tasks": tasks, "prompts": prompts})


def keys(key: str | None = FAKE_OPENAI_KEY) -> dict[str, str | None]:
    """The stage's secrets: `key` in MY_LLM_KEY (None: the variable is not set), and a Hub token."""
    return {"MY_LLM_KEY": key, "HF_TOKEN": FAKE_HF_TOKEN}


def assert_nowhere(secret: str, folder: Path, *outputs: str) -> None:
    """Not in any file of the project folder (artifacts, the cache and its WAL), nor in what the stage printed."""
    for output in outputs:
        assert secret not in output
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def cached_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "data/cache/generations.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


@pytest.mark.slow
def test_killed_run_resumes_without_asking_twice(tmp_path: Path, server: FakeLLMServer) -> None:
    server.latency_s = 0.2
    folder = project(tmp_path, server, limit=20, generate={"concurrency": 2})
    process = start_stage("generate", folder, env=keys())
    deadline = time.monotonic() + 60
    while server.count(CHAT_PATH) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "data/generations.parquet").exists()
    saved = cached_rows(folder)
    assert 4 <= saved < 20  # 8 asked, at most 2 in flight, and an answer or two may not be saved yet
    asked_before = server.count(CHAT_PATH, fault=None)

    resumed = run_stage("generate", folder, env=keys(), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert server.count(CHAT_PATH, fault=None) - asked_before == 20 - saved  # only the missing ones
    first = (folder / "data/generations.parquet").read_bytes()
    table = pq.read_table(folder / "data/generations.parquet")
    assert table.num_rows == 20 and table.column("error").null_count == 20

    asked_before = server.count(CHAT_PATH, fault=None)
    again = run_stage("generate", folder, env=keys(), timeout=120)
    assert again.returncode == 0
    assert server.count(CHAT_PATH, fault=None) == asked_before
    assert (folder / "data/generations.parquet").read_bytes() == first
    assert "20 from cache, 0 sent" in again.stdout


def test_too_many_failures_fail_the_stage_after_saving_everything(tmp_path: Path, server: FakeLLMServer) -> None:
    server.fail_marker = {"`is_palindrome`": "400"}
    folder = project(tmp_path, server, limit=3, generate={"max_error_rate": 0.2})
    result = run_stage("generate", folder, env=keys(), timeout=120)
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
    result = run_stage("generate", folder, env=keys(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {FAKE_OPENAI_KEY}"
    assert "generate: a: 3/3 (100%), 0 failed" in result.stderr  # plain progress lines when not on a terminal
    for secret in (FAKE_OPENAI_KEY, FAKE_HF_TOKEN):
        assert_nowhere(secret, folder, result.stdout, result.stderr)


# A key shaped like OpenAI's, and one with no token shape at all (no digits): only knowing its value can scrub it.
@pytest.mark.parametrize("key", [FAKE_OPENAI_KEY, "local-server-key-without-any-shape"])
def test_a_key_the_server_echoes_in_an_error_is_recorded_and_printed_scrubbed(
    tmp_path: Path, server: FakeLLMServer, key: str
) -> None:
    server.fail_marker = {"`is_palindrome`": "401"}
    folder = project(tmp_path, server, limit=3)
    result = run_stage("generate", folder, env=keys(key), timeout=120)
    assert result.returncode == 1  # 1 of 3 failed, over the default error budget
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {key}"
    error = pq.read_table(folder / "data/generations.parquet").column("error")[0].as_py()
    assert error == "HTTP 401: Incorrect API key provided: Bearer [redacted] (after 1 attempt)"
    assert result.stderr.strip().endswith(f"first error: {error}")
    assert_nowhere(key, folder, result.stdout, result.stderr)


def test_an_api_key_env_that_is_not_set_stops_the_stage_before_any_request(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    folder = project(tmp_path, server, limit=3)
    result = run_stage("generate", folder, env=keys(None), timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (
            "generate: error: params.yaml: models.a.api_key_env: MY_LLM_KEY is not set "
            "(export it, or remove api_key_env if the server needs no key)"
        )
    ]
    assert server.count(fault=None) == 0 and not (folder / "data/generations.parquet").exists()
    assert run_stage("generate", folder, env=keys(""), timeout=120).returncode == 2  # set but empty is no key either
    assert server.count(fault=None) == 0


def test_malformed_replies_are_row_errors_and_the_stage_goes_on(tmp_path: Path, server: FakeLLMServer) -> None:
    faults = {"`is_palindrome`": "list_content", "`chunk_list`": "null_content", "`clamp`": "text_usage"}
    server.fail_marker = dict(faults)
    folder = project(tmp_path, server, limit=10, generate={"max_error_rate": 0.3})
    for _ in range(2):  # the rerun asks for the three again, and they are malformed again
        result = run_stage("generate", folder, env=keys(), timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("generate: a: 7 ok, 3 failed, ")
        errors = pq.read_table(folder / "data/generations.parquet").column("error").to_pylist()
        assert "choices.0.message.content: Input should be a valid string" in errors[0]
        assert errors[1] == "empty answer (finish_reason: stop) (after 1 attempt)"
        assert "usage.prompt_tokens: Input should be a valid integer (got 'many')" in errors[2]
        assert errors[3:] == [None] * 7
        assert "Traceback" not in result.stderr
    assert server.count(CHAT_PATH, fault=None) == 13 and cached_rows(folder) == 7


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_request_cache_stops_the_stage_with_one_line(
    tmp_path: Path, server: FakeLLMServer, damage: str
) -> None:
    folder = project(tmp_path, server, limit=20)
    cache = folder / "data/cache/generations.sqlite"
    if damage == "garbage":
        cache.parent.mkdir(parents=True)
        cache.write_bytes(os.urandom(8192))
    else:
        assert run_stage("generate", folder, env=keys(), timeout=120).returncode == 0
        (folder / "data/generations.parquet").unlink()
        with cache.open("r+b") as file:
            file.truncate(cache.stat().st_size // 2)
    asked = server.count(fault=None)
    damaged = cache.read_bytes()
    result = run_stage("generate", folder, env=keys(), timeout=120)
    assert result.returncode == 1
    reason = "file is not a database" if damage == "garbage" else "database disk image is malformed"
    assert result.stderr.splitlines() == [
        (
            f"generate: error: data/cache/generations.sqlite: the request cache is corrupt ({reason}); delete it and "
            "rerun (answers already in the stage's output artifact are kept, the others are asked again)"
        )
    ]
    assert server.count(fault=None) == asked and not (folder / "data/generations.parquet").exists()
    assert cache.read_bytes() == damaged
    cache.unlink()
    assert run_stage("generate", folder, env=keys(), timeout=120).returncode == 0  # doing what it says works
