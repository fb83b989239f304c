"""The fake LLM server answers real clients over loopback the way the tests that use it assume it does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx2
import huggingface_hub.constants
import pytest
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import InferenceTimeoutError, OverloadedError

from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer, canned_answer

INSTRUCTION = "Write a function that reverses a string."


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(slow_s=5.0) as srv:
        yield srv


@pytest.fixture
def http(server: FakeLLMServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=5.0) as client:
        yield client


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses every request in offline mode, loopback included; these tests only reach the fake."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def chat(http: httpx2.Client, content: str = INSTRUCTION, **extra: object) -> httpx2.Response:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
    body = {"model": "m1", "messages": messages}
    return http.post(CHAT_PATH, json={**body, **extra}, headers={"Authorization": "Bearer sk-test"})


def test_chat_answer_is_deterministic_with_usage_and_headers(server: FakeLLMServer, http: httpx2.Client) -> None:
    data = chat(http).json()
    text = canned_answer("m1", INSTRUCTION)
    assert "```python\n# Write a function that reverses a string.\n" in text
    assert data["object"] == "chat.completion" and data["model"] == "m1"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert data["choices"][0]["finish_reason"] == "stop"
    completion = len(text.split())
    assert data["usage"] == {"prompt_tokens": 2 + 7, "completion_tokens": completion, "total_tokens": 9 + completion}
    (req,) = server.requests
    assert req["path"] == CHAT_PATH and req["fault"] == "ok" and req["body"]["model"] == "m1"
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert server.count() == server.count(CHAT_PATH) == 1 and server.count(fault=None) == 1


def test_stop_cuts_before_the_earliest_stop_string(http: httpx2.Client) -> None:
    choice = chat(http, stop=["def", "```"]).json()["choices"][0]
    assert choice["message"]["content"] == "Here is a solution from m1.\n\n"
    assert choice["finish_reason"] == "stop"
    assert chat(http, stop="from").json()["choices"][0]["message"]["content"] == "Here is a solution "


def test_max_tokens_truncates_to_words_with_finish_reason_length(http: httpx2.Client) -> None:
    data = chat(http, max_tokens=3).json()
    assert data["choices"][0]["message"]["content"] == "Here is a"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    assert chat(http, max_completion_tokens=2).json()["choices"][0]["message"]["content"] == "Here is"
    assert chat(http, max_tokens=1000).json()["choices"][0]["finish_reason"] == "stop"


def test_invalid_requests_get_400(server: FakeLLMServer, http: httpx2.Client) -> None:
    assert chat(http, stream=True).status_code == 400
    assert http.post(CHAT_PATH, json={"messages": [{"role": "user", "content": "x"}]}).status_code == 400
    assert chat(http, max_tokens=0).status_code == 400
    assert server.count(fault="400") == 3 and server.count() == 0


def test_script_is_consumed_in_order_then_falls_back_to_ok(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.script.extend(["429", "500", "400"])
    first = chat(http)
    assert first.status_code == 429 and first.headers["Retry-After"] == "0"
    assert first.json() == {"error": {"message": "rate limited", "type": "rate_limit"}}
    assert chat(http).status_code == 500
    assert http.get("/v1/models").json()["data"] == [{"id": "fake-model", "object": "model"}]
    assert chat(http).status_code == 400
    assert chat(http).status_code == 200
    assert [r["fault"] for r in server.requests if r["path"] == CHAT_PATH] == ["429", "500", "400", "ok"]
    assert server.count(fault="429") == 1 and server.count(fault=None) == 5  # the GET /v1/models is never faulted
    server.reset()
    assert server.requests == [] and server.script == []


def test_retry_after_header_follows_retry_after_s(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.retry_after_s = 1.5
    server.script.append("429")
    assert chat(http).headers["Retry-After"] == "1.5"
    server.retry_after_s = None
    server.script.append("429")
    assert "Retry-After" not in chat(http).headers


def test_401_echoes_the_authorization_header(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.script.append("401")
    response = chat(http)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect API key provided: Bearer sk-test"
    server.script.append("401")
    unauthorized = http.post("/", json={"inputs": "x"}).json()
    assert unauthorized == {"error": "Unauthorized: (none)", "error_type": "unauthorized"}


def test_malformed_faults_answer_200_with_unusable_text_or_counts(server: FakeLLMServer, http: httpx2.Client) -> None:
    text = canned_answer("m1", INSTRUCTION)
    expected = {
        "list_content": [{"type": "text", "text": text}],
        "object_content": {"type": "text", "text": text},
        "null_content": None,
        "empty_content": "",
    }
    for fault, content in expected.items():
        server.script.append(fault)
        response = chat(http)
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == content
    server.script.append("text_usage")
    assert chat(http).json()["usage"]["prompt_tokens"] == "many"
    server.script.extend(["list_content", "text_usage"])
    (out,) = http.post("/", json={"inputs": "Do X.", "parameters": {"details": True}}).json()
    assert out["generated_text"] == [{"type": "text", "text": canned_answer("tgi", "Do X.")}]
    bare = http.post("/generate", json={"inputs": "Do X.", "parameters": {"details": True}}).json()
    assert bare["generated_text"] == canned_answer("tgi", "Do X.") and bare["details"]["generated_tokens"] == "many"
    assert [r["fault"] for r in server.requests] == [*expected, "text_usage", "list_content", "text_usage"]


def test_drop_closes_the_connection_without_a_response(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.script.append("drop")
    with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
        chat(http)
    assert chat(http).status_code == 200  # the server keeps serving
    assert server.count(fault="drop") == 1


def test_slow_trips_the_client_timeout(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.script.append("slow")
    with pytest.raises(httpx2.ReadTimeout):
        http.post(CHAT_PATH, json={"model": "m", "messages": [{"role": "user", "content": "x"}]}, timeout=0.2)
    assert server.count(fault="slow") == 1


def test_fail_marker_always_wins_and_leaves_the_script_alone(server: FakeLLMServer, http: httpx2.Client) -> None:
    server.fail_marker = {"ALWAYS500": "500", "BAD400": "400"}
    server.script.append("429")
    assert chat(http, content="task ALWAYS500").status_code == 500
    assert chat(http, content="task ALWAYS500").status_code == 500
    assert chat(http, content="task BAD400").status_code == 400
    assert chat(http).status_code == 429
    assert chat(http).status_code == 200


def test_latency_overlaps_across_concurrent_requests() -> None:
    async def burst(url: str) -> float:
        limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx2.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            start = time.perf_counter()
            responses = await asyncio.gather(*(client.post(CHAT_PATH, json=body) for _ in range(64)))
            assert all(r.status_code == 200 for r in responses)
            return time.perf_counter() - start

    with FakeLLMServer(latency_s=0.2) as server:
        elapsed = asyncio.run(burst(server.url))
        assert server.count() == 64
    assert 0.2 <= elapsed < 1.0  # 64 x 0.2 s served at once, not one after another


def test_tgi_routes_raw(server: FakeLLMServer, http: httpx2.Client) -> None:
    params = {"max_new_tokens": 50, "stop": ["def"], "details": True, "seed": 7, "return_full_text": True}
    (out,) = http.post("/", json={"inputs": "Do X.", "parameters": params, "stream": False}).json()
    assert out["generated_text"] == "Do X." + canned_answer("tgi", "Do X.").split("def")[0] + "def"
    assert out["details"]["finish_reason"] == "stop_sequence" and out["details"]["seed"] == 7
    bare = http.post("/generate", json={"inputs": "Do X."}).json()
    assert bare == {"generated_text": canned_answer("tgi", "Do X.")}
    assert http.post("/", json={"inputs": "Do X.", "stream": True}).status_code == 400
    server.script.append("429")
    overloaded = http.post("/", json={"inputs": "Do X."})
    assert overloaded.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    server.tgi_errors = False
    server.script.append("500")
    assert http.post("/", json={"inputs": "Do X."}).json()["error"]["type"] == "server_error"


@pytest.mark.usefixtures("hub_online")
def test_huggingface_hub_text_generation_and_chat(server: FakeLLMServer) -> None:
    async def run() -> None:
        async with AsyncInferenceClient(model=server.url, timeout=2.0) as client:
            out = await client.text_generation(INSTRUCTION, details=True, max_new_tokens=100, stop=["\ndef"], seed=3)
            answer = canned_answer("tgi", INSTRUCTION)
            assert out.generated_text == answer[: answer.index("\ndef") + 4]  # TGI keeps the stop sequence
            assert out.details is not None and out.details.finish_reason == "stop_sequence" and out.details.seed == 3
            out = await client.text_generation(INSTRUCTION, details=True, max_new_tokens=2)
            assert out.generated_text == "Here is" and out.details is not None
            assert (out.details.finish_reason, out.details.generated_tokens) == ("length", 2)
            out = await client.text_generation(INSTRUCTION, details=True)
            assert out.details is not None and out.details.finish_reason == "eos_token"
            chat = await client.chat_completion([{"role": "user", "content": INSTRUCTION}], max_tokens=50)
            assert chat.choices[0].message.content == canned_answer("dummy", INSTRUCTION)  # URL model => "dummy"
            server.script.extend(["429", "drop", "slow"])
            with pytest.raises(OverloadedError):
                await client.text_generation("x", details=True)
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.text_generation("x", details=True)
        async with AsyncInferenceClient(model=server.url, timeout=0.2) as client:
            with pytest.raises(InferenceTimeoutError):
                await client.text_generation("x", details=True)
        async with AsyncInferenceClient(base_url=server.url + "/v1", timeout=2.0) as client:
            chat = await client.chat_completion([{"role": "user", "content": "hi"}], model="m2")
            assert chat.choices[0].message.content == canned_answer("m2", "hi")

    asyncio.run(run())
    paths = [r["path"] for r in server.requests]
    assert paths == ["/", "/", "/", CHAT_PATH, "/", "/", "/", CHAT_PATH]
    assert server.requests[0]["body"]["parameters"]["max_new_tokens"] == 100
