"""Fixtures of the tests that talk to the fake LLM server."""

from __future__ import annotations

from collections.abc import Iterator

import huggingface_hub
import pytest

from llm_feedback.testing.fake_llm_server import FakeLLMServer


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    """A fresh fake LLM server on loopback for each test."""
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def hub_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses even loopback URLs when offline; the fake server is all these tests reach."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
