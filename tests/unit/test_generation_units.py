from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from tenacity import RetryCallState

from llm_feedback.llm.base import Request, TransientError, cut_at_stop, parse_retry_after
from llm_feedback.llm.batch import _limits, endpoint_identity, request_hash
from llm_feedback.llm.runner import Limits, server_aware_wait
from llm_feedback.params import GenerateParams, GenerationOverrides, GenerationParams, ModelSpec

MESSAGES = [{"role": "user", "content": "Write `f`."}]


def api(**kwargs) -> ModelSpec:
    return ModelSpec(**{"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:8000/v1", **kwargs})


def test_overrides_take_only_what_the_model_sets() -> None:
    defaults = GenerationParams(max_new_tokens=512, temperature=0.2, seed=3)
    spec = api(generation=GenerationOverrides(temperature=0.0, seed=None))
    merged = spec.generation_params(defaults)
    assert (merged.max_new_tokens, merged.temperature, merged.seed) == (512, 0.0, None)


def request(messages: list[dict[str, str]] = MESSAGES, prompt: str | None = None, **generation) -> Request:
    return Request(model="a", messages=messages, prompt=prompt, generation=GenerationParams(**generation))


def test_request_hash_depends_on_what_determines_the_answer_only() -> None:
    base = request_hash(api(), request())
    assert base == request_hash(api(api_key_env="OTHER_KEY", concurrency=64), request())
    assert base == request_hash(api(base_url="http://127.0.0.1:8000/v1/?api-version=2"), request())
    assert base == request_hash(api(), dataclasses.replace(request(), model="another-name-for-the-same-model"))
    assert base != request_hash(api(), request(temperature=0.7))
    assert base != request_hash(api(model="m2"), request())
    assert base != request_hash(api(base_url="http://127.0.0.1:8001/v1"), request())
    assert base != request_hash(api(), request([{"role": "user", "content": "Write `g`."}]))
    assert base != request_hash(api(), dataclasses.replace(request(), json_schema={"type": "object"}))
    local = ModelSpec(backend="transformers", model="m")
    assert request_hash(local, request(prompt="<s>a")) != request_hash(local, request(prompt="<s>b"))


def test_replicas_hash_as_their_first_whichever_answers() -> None:
    """The first URL names replicas in the cache: listing more of them keeps every cached answer."""
    one = request_hash(api(), request())
    assert one == request_hash(api(base_url=["http://127.0.0.1:8000/v1"]), request())
    assert one == request_hash(api(base_url=["http://127.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]), request())
    assert one != request_hash(api(base_url=["http://10.0.0.2:8000/v1", "http://127.0.0.1:8000/v1"]), request())


def test_concurrency_is_per_replica() -> None:
    assert _limits(api(concurrency=4), GenerateParams()).concurrency == 4
    assert _limits(api(base_url=["http://a/v1", "http://b/v1", "http://c/v1"]), GenerateParams()).concurrency == 24


def test_request_hash_is_stable() -> None:
    """Cached and shipped answers are found by these hashes: a change would pay for every request again."""
    assert request_hash(api(), request()) == "8f700255b520d9458a066743f8db40e80a32dc2e9620d76d98ad3e74a2a37b35"


def test_endpoint_identity_drops_the_query_string() -> None:
    assert (
        endpoint_identity(api(base_url="https://host.example:8443/v1/?api-version=2")) == "https://host.example:8443/v1"
    )
    assert endpoint_identity(ModelSpec(backend="hf", model="m")) == "provider:auto"
    assert endpoint_identity(ModelSpec(backend="transformers", model="m")) is None


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("a```b", ["```"], ("a", True)),
        ("abc", ["x"], ("abc", False)),
        ("a;b.c", [".", ";"], ("a", True)),
        ("abc", [""], ("abc", False)),
    ],
)
def test_cut_at_stop(text: str, stop: list[str], expected: tuple[str, bool]) -> None:
    assert cut_at_stop(text, stop) == expected


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert parse_retry_after(None) is None


def test_wait_is_exponential_never_shorter_than_retry_after_and_never_longer_than_backoff_max_s() -> None:
    wait = server_aware_wait(
        Limits(
            concurrency=4,
            requests_per_minute=None,
            timeout_s=1.0,
            max_attempts=5,
            backoff_initial_s=0.1,
            backoff_max_s=10.0,
        )
    )

    def state(attempt: int, error: Exception) -> RetryCallState:
        return SimpleNamespace(attempt_number=attempt, outcome=SimpleNamespace(exception=lambda: error))  # type: ignore[return-value]

    assert 0.1 <= wait(state(1, TransientError("500"))) <= 0.2
    assert 0.8 <= wait(state(4, TransientError("500"))) <= 0.9
    assert wait(state(1, TransientError("429", retry_after=7.0))) >= 7.0
    assert wait(state(1, TransientError("429", retry_after=100_000.0))) == 10.0
    assert wait(state(30, TransientError("500"))) == 10.0
