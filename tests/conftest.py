"""Shared fixtures. Tests reach nothing beyond loopback: the Hub is switched off before anything imports it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# huggingface_hub reads these at import time, so they are set here, before any test module imports it.
_HF_HOME = tempfile.mkdtemp(prefix="llm-feedback-hf-home-")
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": _HF_HOME,
        "DVC_NO_ANALYTICS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)

from tests.tiny import build_tokenizer  # noqa: E402  (must follow the environment above)


@pytest.fixture(autouse=True, scope="session")
def _remove_hf_home() -> Iterator[None]:
    yield
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ChatML tokenizer folder, like Qwen2.5's, trained locally."""
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer") / "chatml")
