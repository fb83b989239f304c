"""One model served by three replicas of the fake LLM server, through the generate library call and the stage: the
requests spread over them, a replica killed mid-run loses no row and costs no answer twice, and the request cache
does not care which replica answered."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from llm_feedback.generation import Generations, generate
from llm_feedback.llm.factory import backend_for
from llm_feedback.params import FetchParams, Params, load_params
from llm_feedback.prompts import build_prompts
from llm_feedback.sources import fetch_tasks
from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer
from tests.conftest import PROJECT_ROOT
from tests.project import make_project, run_stage

SAMPLE = PROJECT_ROOT / "data/sample/tasks.yaml"
RETRIES = {"backoff_initial_s": 0.05, "backoff_max_s": 0.5, "timeout_s": 5.0}


@pytest.fixture
def replicas() -> Iterator[list[FakeLLMServer]]:
    """Three replicas of one model, each answering after 300 ms: longer than a stopping server waits for requests in
    flight (100 ms), so a kill cuts them."""
    servers = [FakeLLMServer(latency_s=0.3).start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


def urls(servers: list[FakeLLMServer]) -> list[str]:
    return [f"{server.url}/v1" for server in servers]


def prompts_for(params: Params, limit: int | None = None) -> pa.Table:
    tasks = fetch_tasks(FetchParams(path=SAMPLE, limit=limit)).table
    return build_prompts(tasks, models=params.models, compare=params.compare, params=params.format).prompts


def run(params: Params, prompts: pa.Table) -> Generations:
    return generate(
        prompts=prompts, params=params, previous=None, make_backend=partial(backend_for, run=params.generate)
    )


def received(server: FakeLLMServer) -> Counter[str]:
    """How many times each instruction reached the server, whatever became of it."""
    return Counter(r["body"]["messages"][-1]["content"] for r in server.requests if r["path"] == CHAT_PATH)


def kill_after(server: FakeLLMServer, requests: int) -> threading.Thread:
    """Stops the server (listener and open connections) once it has received `requests` requests."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while server.count(CHAT_PATH, fault=None) < requests and time.monotonic() < deadline:
            time.sleep(0.005)
        server.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_replica_killed_mid_run_loses_nothing_and_nothing_is_paid_twice(
    tmp_path: Path, replicas: list[FakeLLMServer]
) -> None:
    params = Params.model_validate(
        {
            "paths": {"generation_cache": str(tmp_path / "cache.sqlite")},
            "models": {"a": {"backend": "openai", "model": "served", "base_url": urls(replicas)}},
            "compare": ["a"],
            "generate": {"concurrency": 2, **RETRIES},  # two in flight per replica
        }
    )
    prompts = prompts_for(params)
    rows = prompts.num_rows
    dead, live = replicas[2], replicas[:2]
    killer = kill_after(dead, 4)
    result = run(params, prompts)
    killer.join()

    table = result.table.to_pylist()
    assert all(r["response"] and r["error"] is None for r in table)  # every row answered
    attempts = {m[-1]["content"]: r["attempts"] for m, r in zip(prompts.column("messages").to_pylist(), table)}
    on_live = received(live[0]) + received(live[1])
    on_dead = received(dead)
    assert max(on_live.values()) == 1  # a live replica is never asked for a row twice
    assert max(on_dead.values()) == 1
    retried = on_live.keys() & on_dead.keys()  # in flight on the dead replica when it died
    assert retried
    assert all(attempts[text] >= 2 for text in retried)  # each one's first attempt failed: asked again, paid once
    assert on_live.keys() | on_dead.keys() == attempts.keys()
    answered_by_dead = len(on_dead) - len(retried)
    assert len(on_live) + answered_by_dead == rows
    assert answered_by_dead < rows / 3 - 4  # the dead replica's share went to the others
    assert all(len(received(server)) > rows / 3 for server in live)
    assert result.summaries[0].failed == 0

    again = run(params, prompts)  # the cache answers, whichever replica answered first, the dead one included
    assert again.summaries[0].cached == rows
    assert again.table.column("response").to_pylist() == result.table.column("response").to_pylist()
    assert sum(len(received(server)) for server in live) == len(on_live)  # nothing new sent


def test_the_stage_keeps_the_cache_when_replicas_are_added_and_spreads_the_rest(
    tmp_path: Path, replicas: list[FakeLLMServer]
) -> None:
    shipped = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    shipped["fetch"].update(path=str(SAMPLE), limit=12)
    shipped["generate"].update(RETRIES)
    shipped["compare"] = ["local-server"]
    server = shipped["models"]["local-server"]
    server["base_url"] = urls(replicas)[0]  # one server, as shipped
    loaded = Params.model_validate(shipped)
    folder = make_project(tmp_path, params=shipped, inputs={"prompts": prompts_for(loaded, limit=12)})

    first = run_stage("generate", folder, timeout=120)
    assert first.returncode == 0, first.stderr
    assert replicas[0].count(CHAT_PATH) == 12

    (folder / "data/generations.parquet").unlink()  # so only the request cache knows the first answers
    shipped["fetch"]["limit"] = 24
    server["base_url"] = urls(replicas)  # the same server, now with two more replicas of it
    make_project(folder, params=shipped, inputs={"prompts": prompts_for(loaded, limit=24)})
    assert load_params(folder / "params.yaml").models["local-server"].base_urls == urls(replicas)
    second = run_stage("generate", folder, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "12 from cache, 12 sent" in second.stdout
    # all twelve at once (concurrency 32 per replica): four each
    assert [server.count(CHAT_PATH) for server in replicas] == [12 + 4, 4, 4]
