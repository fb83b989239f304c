"""The scrubber replaces every secret it knows and every token-shaped string, and leaves ordinary text alone."""

from __future__ import annotations

import pytest

from llm_feedback.secrets import MARKER, register_secret, register_secret_variable, scrub


def test_the_project_key_variables_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "plain-hub-value-01")
    monkeypatch.setenv("OPENAI_API_KEY", "plain-openai-value-02")
    monkeypatch.setenv("ARGILLA_API_KEY", "plain-argilla-value-03")
    text = "hub plain-hub-value-01, openai plain-openai-value-02, argilla plain-argilla-value-03."
    assert scrub(text) == f"hub {MARKER}, openai {MARKER}, argilla {MARKER}."


def test_registered_variables_are_read_at_each_scrub(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret_variable("SCRUB_TEST_MODEL_KEY")
    assert scrub("key later-set-value-x") == "key later-set-value-x"
    monkeypatch.setenv("SCRUB_TEST_MODEL_KEY", "later-set-value-x")
    assert scrub("key later-set-value-x") == f"key {MARKER}"


def test_registered_values_are_replaced_whole_even_inside_others() -> None:
    register_secret("owner-key-abcdefgh")
    register_secret("owner-key-abcdefgh-and-more")
    assert scrub("a owner-key-abcdefgh-and-more b owner-key-abcdefgh") == f"a {MARKER} b {MARKER}"


def test_short_values_are_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")  # what keyless local servers are given
    register_secret("none")
    assert scrub("EMPTY answer, none found") == "EMPTY answer, none found"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HTTP 401: Incorrect API key: Bearer abc123def456ghi", f"HTTP 401: Incorrect API key: Bearer {MARKER}"),
        ("authorization: basic dXNlcjpwYXNzd29yZDE=", f"authorization: basic {MARKER}"),
        ("token hf_abcdefghijklmnopqrstuvwxyz0123 refused", f"token {MARKER} refused"),
        ("key sk-proj-abc_DEF-0123456789xyz is invalid", f"key {MARKER} is invalid"),
        ("GET https://bob:pa55word@example.com/v1 failed", f"GET https://{MARKER}@example.com/v1 failed"),
        ("GET https://example.com/v1?api_key=s3cr3t&model=m", f"GET https://example.com/v1?api_key={MARKER}&model=m"),
    ],
)
def test_token_shapes_are_replaced(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Bearer authentication is not enabled on this server",
        "a risk-free task-oriented sk-learn pipeline",
        "def f():\n    return {'token': 'abc'}\n",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_answers_keep_token_shaped_code_but_lose_known_values() -> None:
    register_secret("answer-echo-0123456789")
    answer = 'headers = {"Authorization": "Bearer sk-abcdefghijklmnop1234"}  # answer-echo-0123456789'
    assert scrub(answer, shapes=False) == f'headers = {{"Authorization": "Bearer sk-abcdefghijklmnop1234"}}  # {MARKER}'
