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
# DVC gets its own global config (no analytics, no update check) and site cache, so tests never touch the user's.
_SCRATCH = Path(tempfile.mkdtemp(prefix="llm-feedback-tests-"))
(_SCRATCH / "dvc-global").mkdir()
(_SCRATCH / "dvc-global" / "config").write_text("[core]\n    analytics = false\n    check_update = false\n")
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(_SCRATCH / "hf-home"),
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(_SCRATCH / "dvc-global"),
        "DVC_SITE_CACHE_DIR": str(_SCRATCH / "dvc-site-cache"),
        "DVC_STUDIO_OFFLINE": "true",
        "TOKENIZERS_PARALLELISM": "false",
    }
)

from llm_feedback.testing.tiny_models import build_tokenizer  # noqa: E402  (must follow the environment above)


@pytest.fixture(autouse=True, scope="session")
def _remove_scratch() -> Iterator[None]:
    yield
    shutil.rmtree(_SCRATCH, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ChatML tokenizer folder, like Qwen2.5's, trained locally."""
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer") / "chatml")


@pytest.fixture(scope="session")
def server_venv() -> Path:
    """The annotation server's own virtualenv, built once (about a minute) and kept in .argilla/venv for later runs."""
    from llm_feedback.annotation.embedded import EmbeddedServer, ensure_venv

    return ensure_venv(EmbeddedServer(data_dir=PROJECT_ROOT / ".argilla")).parent.parent


@pytest.fixture(scope="session")
def engine_venv() -> Path:
    """vLLM's own virtualenv, built once (about a minute, 2.1 GB) and kept in .engine/venv for later runs."""
    from llm_feedback.testing.engine_server import ensure_venv

    return ensure_venv(PROJECT_ROOT / ".engine" / "venv").parent.parent
