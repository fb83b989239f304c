"""The generate stage against real servers on loopback: the fake LLM server for `openai` and `hf`, a tiny local
model for `transformers`."""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest
from huggingface_hub import AsyncInferenceClient

from llm_feedback.errors import ConfigError
from llm_feedback.generation import Generations, generate
from llm_feedback.llm.factory import backend_for
from llm_feedback.llm.hf_backend import HFBackend
from llm_feedback.params import FetchParams, Params
from llm_feedback.prompts import build_prompts
from llm_feedback.sources import fetch_tasks
from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer, canned_answer
from llm_feedback.testing.tiny_models import build_model
from tests.conftest import PROJECT_ROOT

FAST_RETRIES = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}


def make_params(tmp_path: Path, models: dict, generate: dict | None = None, generation: dict | None = None) -> Params:
    return Params.model_validate(
        {
            "paths": {"generation_cache": str(tmp_path / "cache.sqlite")},
            "models": models,
            "compare": list(models),
            "generate": {**FAST_RETRIES, **(generate or {})},
            "generation": {"max_new_tokens": 64, **(generation or {})},
        }
    )


def openai_model(server: FakeLLMServer, **extra: object) -> dict:
    return {"backend": "openai", "model": "served-model", "base_url": f"{server.url}/v1", **extra}


def prompts_for(params: Params, limit: int = 6, marker: dict[int, str] | None = None) -> pa.Table:
    tasks = fetch_tasks(FetchParams(path=PROJECT_ROOT / "data/sample/tasks.yaml", limit=limit)).table
    if marker:
        texts = tasks.column("instruction").to_pylist()
        for row, text in marker.items():
            texts[row] = f"{texts[row]} {text}"
        tasks = tasks.set_column(1, "instruction", pa.array(texts, pa.string()))
    prompts = build_prompts(tasks, models=params.models, compare=params.compare, params=params.format).prompts
    return prompts


def run(params: Params, prompts: pa.Table, previous: pa.Table | None = None, factory=None) -> Generations:
    factory = factory or partial(backend_for, run=params.generate)
    return generate(prompts=prompts, params=params, previous=previous, make_backend=factory)


def test_openai_backend_answers_every_row_and_records_usage(tmp_path: Path, server: FakeLLMServer) -> None:
    params = make_params(tmp_path, {"a": openai_model(server), "b": openai_model(server, model="other")})
    prompts = prompts_for(params)
    result = run(params, prompts)
    rows = result.table.to_pylist()
    assert [r["model"] for r in rows] == ["a"] * 6 + ["b"] * 6
    instruction = prompts.column("messages")[0].as_py()[-1]["content"]
    assert rows[0]["response"] == canned_answer("served-model", instruction)
    assert rows[6]["response"] == canned_answer("other", instruction)
    assert all(r["error"] is None and r["finish_reason"] == "stop" and r["attempts"] == 1 for r in rows)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["latency_s"] > 0 for r in rows)
    assert server.count(CHAT_PATH) == 12
    body = server.requests[0]["body"]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (64, 0.0, 1.0, 0)
    assert [s.ok for s in result.summaries] == [6, 6]


def test_transient_faults_are_retried_and_counted(tmp_path: Path, server: FakeLLMServer) -> None:
    server.script = ["429", "500", "drop", "slow"]
    params = make_params(tmp_path, {"a": openai_model(server)}, generate={"concurrency": 1, "timeout_s": 0.5})
    result = run(params, prompts_for(params, limit=3))
    rows = result.table.to_pylist()
    assert all(r["response"] for r in rows)
    assert sum(r["attempts"] for r in rows) == 7  # each fault cost one extra attempt, whichever request met it
    assert server.count(CHAT_PATH) == 3
    assert server.count(CHAT_PATH, fault=None) == 7
    assert result.summaries[0].failed == 0


def test_retry_after_is_honoured_up_to_backoff_max_s(tmp_path: Path, server: FakeLLMServer) -> None:
    server.retry_after_s = 0.6
    server.script = ["429"]
    params = make_params(tmp_path, {"a": openai_model(server)}, generate={"backoff_max_s": 1.0})
    started = time.monotonic()
    table = run(params, prompts_for(params, limit=1)).table
    assert time.monotonic() - started >= 0.6
    assert table.column("attempts").to_pylist() == [2]


def test_client_errors_are_not_retried_and_the_run_goes_on(tmp_path: Path, server: FakeLLMServer) -> None:
    server.fail_marker = {"BAD400": "400"}
    params = make_params(tmp_path, {"a": openai_model(server)})
    result = run(params, prompts_for(params, limit=4, marker={1: "BAD400"}))
    rows = result.table.to_pylist()
    assert rows[1]["response"] is None and rows[1]["attempts"] == 1
    assert rows[1]["error"].startswith("HTTP 400: ")
    assert [r["response"] is not None for r in rows] == [True, False, True, True]
    assert (result.summaries[0].failed, result.summaries[0].error_rate) == (1, 0.25)
    assert server.count(CHAT_PATH, fault="400") == 1


def test_retries_give_up_after_max_attempts(tmp_path: Path, server: FakeLLMServer) -> None:
    server.fail_marker = {"ALWAYS500": "500"}
    params = make_params(tmp_path, {"a": openai_model(server)}, generate={"max_attempts": 3})
    table = run(params, prompts_for(params, limit=2, marker={0: "ALWAYS500"})).table
    row = table.to_pylist()[0]
    assert row["attempts"] == 3 and row["error"].endswith("(after 3 attempts)")
    assert server.count(CHAT_PATH, fault="500") == 3


def test_concurrency_is_bounded_per_model_and_models_run_together(tmp_path: Path, server: FakeLLMServer) -> None:
    server.latency_s = 0.2
    params = make_params(
        tmp_path, {"a": openai_model(server, concurrency=3), "b": openai_model(server, model="b", concurrency=3)}
    )
    started = time.monotonic()
    run(params, prompts_for(params, limit=9))
    elapsed = time.monotonic() - started
    assert server.max_in_flight == 6  # 3 per model, both models at once
    assert elapsed >= 0.6  # 9 requests through 3 slots: at least 3 rounds of 0.2 s


def test_requests_per_minute_paces_requests(tmp_path: Path, server: FakeLLMServer) -> None:
    params = make_params(tmp_path, {"a": openai_model(server, requests_per_minute=600)}, generate={"concurrency": 8})
    started = time.monotonic()
    run(params, prompts_for(params, limit=5))
    assert time.monotonic() - started >= 0.4  # 10 per second: the 5th leaves 0.4 s after the first


def test_rerun_sends_nothing_and_rebuilds_the_same_bytes(tmp_path: Path, server: FakeLLMServer) -> None:
    params = make_params(tmp_path, {"a": openai_model(server)})
    prompts = prompts_for(params)
    first = run(params, prompts).table
    second = run(params, prompts)
    assert server.count(CHAT_PATH) == 6
    assert second.table.equals(first)
    assert second.summaries[0].cached == 6
    changed = make_params(tmp_path, {"a": openai_model(server)}, generation={"max_new_tokens": 32})
    run(changed, prompts)
    assert server.count(CHAT_PATH) == 12  # a generation param is part of the request's identity


def test_previous_artifact_counts_as_a_cache(tmp_path: Path, server: FakeLLMServer) -> None:
    params = make_params(tmp_path, {"a": openai_model(server)})
    prompts = prompts_for(params)
    first = run(params, prompts).table
    fresh = make_params(tmp_path / "elsewhere", {"a": openai_model(server)})
    again = run(fresh, prompts, previous=first).table
    assert server.count(CHAT_PATH) == 6
    assert again.equals(first)


def test_hf_text_generation_on_a_dedicated_endpoint(
    tmp_path: Path, server: FakeLLMServer, tiny_tokenizer: Path, hub_reachable: None
) -> None:
    server.script = ["429", "500"]
    spec = {"backend": "hf", "endpoint_url": server.url, "tokenizer": str(tiny_tokenizer)}
    params = make_params(tmp_path, {"tgi": spec}, generate={"concurrency": 1}, generation={"stop": ["def "]})
    prompts = prompts_for(params, limit=2)
    table = run(params, prompts).table
    rows = table.to_pylist()
    bodies = [r["body"] for r in server.requests]
    assert {b["inputs"] for b in bodies} == set(prompts.column("prompt").to_pylist())
    assert all(b["parameters"]["do_sample"] is False and "temperature" not in b["parameters"] for b in bodies)
    full = canned_answer("tgi", prompts.column("prompt")[0].as_py())
    assert rows[0]["response"] == full[: full.index("def ")]  # OpenAI's meaning of stop: the text ends before it
    assert rows[0]["finish_reason"] == "stop"
    assert sum(r["attempts"] for r in rows) == 4  # TGI's overloaded (429) and incomplete (500) errors were retried


def test_hf_chat_completion(tmp_path: Path, server: FakeLLMServer, hub_reachable: None) -> None:
    server.script = ["drop"]
    params = make_params(tmp_path, {"provider": {"backend": "hf", "model": "org/model", "provider": "auto"}})

    def factory(name: str, spec) -> HFBackend:
        # Inference Providers live on the Hub's router; the same client is pointed at the fake server instead.
        client = AsyncInferenceClient(base_url=f"{server.url}/v1", timeout=5)
        return HFBackend(spec, params.generate.timeout_s, client=client)

    prompts = prompts_for(params, limit=2)
    table = run(params, prompts, factory=factory).table
    rows = table.to_pylist()
    instruction = prompts.column("messages")[0].as_py()[-1]["content"]
    assert rows[0]["response"] == canned_answer("org/model", instruction)
    assert sorted(r["attempts"] for r in rows) == [1, 2] and rows[0]["prompt_tokens"] > 0  # whichever met the drop
    assert server.count(CHAT_PATH) == 2


@pytest.mark.slow
def test_transformers_backend_generates_in_batches(tmp_path: Path, tiny_tokenizer: Path) -> None:
    model = build_model(tmp_path / "model", tiny_tokenizer)
    params = make_params(
        tmp_path,
        {"local": {"backend": "transformers", "model": str(model)}},
        generate={"batch_size": 4},
        generation={"max_new_tokens": 8},
    )
    prompts = prompts_for(params, limit=6)
    result = run(params, prompts)
    rows = result.table.to_pylist()
    assert all(r["error"] is None and isinstance(r["response"], str) for r in rows)
    assert all(r["completion_tokens"] <= 8 and r["prompt_tokens"] > 10 for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    alone = make_params(
        tmp_path / "fresh",
        {"local": {"backend": "transformers", "model": str(model)}},
        generate={"batch_size": 1},
        generation={"max_new_tokens": 8},
    )
    again = run(alone, prompts).table
    # Greedy decoding gives the same text whether a prompt was batched with others (left-padded) or alone.
    assert again.column("response").to_pylist() == result.table.column("response").to_pylist()
    assert result.summaries[0].ok == 6


def test_a_model_that_cannot_load_stops_the_run_with_one_line(tmp_path: Path, tiny_tokenizer: Path) -> None:
    params = make_params(tmp_path, {"local": {"backend": "transformers", "model": str(tiny_tokenizer)}})
    with pytest.raises(ConfigError, match=r"^params.yaml: models.local: cannot load '.*chatml' \(Unrecognized model"):
        run(params, prompts_for(params, limit=2))


# The reason each malformed reply is recorded with: the field at fault, or "empty answer".
MALFORMED = {
    "list_content": "valid string",
    "object_content": "valid string",
    "null_content": "empty answer",
    "empty_content": "empty answer",
    "text_usage": "valid integer",
}
MALFORMED_FIELDS = {
    "openai": ("message.content", "usage.prompt_tokens"),
    "tgi": ("generated_text", "details.generated_tokens"),
}


def with_malformed_replies(server: FakeLLMServer) -> dict[int, str]:
    """Tasks 1..5 each get one malformed reply (by a marker in their text); tasks 0 and 6 are answered normally."""
    server.fail_marker = {f"MALFORMED-{fault}": fault for fault in MALFORMED}
    return {row: f"MALFORMED-{fault}" for row, fault in enumerate(MALFORMED, start=1)}


def assert_malformed_rows(table: pa.Table, fields: tuple[str, str]) -> None:
    rows = table.to_pylist()
    assert rows[0]["error"] is None and rows[6]["error"] is None and rows[0]["response"]
    content_field, usage_field = fields
    for row, (fault, reason) in zip(rows[1:6], MALFORMED.items()):
        assert row["response"] is None and row["attempts"] == 1, (fault, row)  # not retried
        assert reason in row["error"], (fault, row["error"])
        field = usage_field if fault == "text_usage" else content_field if "valid" in reason else ""
        assert field in row["error"], (fault, row["error"])


def test_malformed_replies_become_row_errors_and_a_rerun_asks_only_for_them(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    params = make_params(tmp_path, {"a": openai_model(server)})
    prompts = prompts_for(params, limit=7, marker=with_malformed_replies(server))
    result = run(params, prompts)
    assert_malformed_rows(result.table, MALFORMED_FIELDS["openai"])
    assert result.summaries[0].failed == 5 and server.count(CHAT_PATH, fault=None) == 7
    again = run(params, prompts).table  # the malformed ones are asked again (and are malformed again), nothing crashes
    assert_malformed_rows(again, MALFORMED_FIELDS["openai"])
    assert server.count(CHAT_PATH, fault=None) == 12


def test_malformed_tgi_replies_become_row_errors(
    tmp_path: Path, server: FakeLLMServer, tiny_tokenizer: Path, hub_reachable: None
) -> None:
    spec = {"backend": "hf", "endpoint_url": server.url, "tokenizer": str(tiny_tokenizer)}
    params = make_params(tmp_path, {"tgi": spec})
    result = run(params, prompts_for(params, limit=7, marker=with_malformed_replies(server)))
    assert_malformed_rows(result.table, MALFORMED_FIELDS["tgi"])
    assert result.summaries[0].failed == 5


def test_malformed_hf_chat_replies_become_row_errors(
    tmp_path: Path, server: FakeLLMServer, hub_reachable: None
) -> None:
    params = make_params(tmp_path, {"provider": {"backend": "hf", "model": "org/model", "provider": "auto"}})

    def factory(name: str, spec) -> HFBackend:
        return HFBackend(spec, params.generate.timeout_s, client=AsyncInferenceClient(base_url=f"{server.url}/v1"))

    table = run(params, prompts_for(params, limit=7, marker=with_malformed_replies(server)), factory=factory).table
    assert_malformed_rows(table, MALFORMED_FIELDS["openai"])


def test_a_huge_retry_after_waits_at_most_backoff_max_s_and_the_row_names_the_cause(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    server.retry_after_s = 100_000
    server.fail_marker = {"REFUSED": "429"}
    params = make_params(tmp_path, {"a": openai_model(server)}, generate={"max_attempts": 3, "backoff_max_s": 0.2})
    started = time.monotonic()
    table = run(params, prompts_for(params, limit=2, marker={0: "REFUSED"})).table
    assert time.monotonic() - started < 5
    refused, answered = table.to_pylist()
    assert refused["attempts"] == 3 and server.count(CHAT_PATH, fault="429") == 3
    assert refused["error"].startswith("HTTP 429: rate limited")
    assert "Retry-After 100000 s" in refused["error"] and "generate.backoff_max_s" in refused["error"]
    assert answered["error"] is None


def test_a_token_a_tgi_server_echoes_is_recorded_scrubbed(
    tmp_path: Path, server: FakeLLMServer, tiny_tokenizer: Path, hub_reachable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "hf_FAKEechoed0123456789abcdefghij"
    monkeypatch.setenv("HF_TOKEN", token)
    server.script = ["401"]
    spec = {"backend": "hf", "endpoint_url": server.url, "tokenizer": str(tiny_tokenizer)}
    params = make_params(tmp_path, {"tgi": spec}, generate={"concurrency": 1})
    result = run(params, prompts_for(params, limit=2))
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {token}"
    error = result.table.column("error")[0].as_py()
    assert error == "HTTP 401: Unauthorized: Bearer [redacted] (after 1 attempt)"
    assert result.summaries[0].first_error == error


def test_an_empty_answer_kept_by_an_earlier_version_is_asked_again(tmp_path: Path, server: FakeLLMServer) -> None:
    params = make_params(tmp_path, {"a": openai_model(server)})
    prompts = prompts_for(params, limit=3)
    first = run(params, prompts).table
    with sqlite3.connect(params.paths.generation_cache) as db:  # in the cache
        db.execute(
            "UPDATE generations SET response = ' \n' WHERE request_hash = ?", (first["request_hash"][0].as_py(),)
        )
    again = run(params, prompts).table
    responses = first.column("response").to_pylist()
    assert server.count(CHAT_PATH) == 4 and again.column("response").to_pylist() == responses
    earlier = first.set_column(first.schema.get_field_index("response"), "response", pa.array(["", *responses[1:]]))
    fresh = make_params(tmp_path / "elsewhere", {"a": openai_model(server)})
    from_artifact = run(fresh, prompts, previous=earlier).table  # in the artifact
    assert server.count(CHAT_PATH) == 5 and from_artifact.column("response").to_pylist() == responses
