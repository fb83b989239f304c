"""Added as `tests/unit/api/conftest.py` to argilla-server 2.8.0's own test suite (see upstream.py).

Its API tests then run without OpenSearch (they search through a mock engine; only the session fixture that clears
OpenSearch's indexes at the end needs a cluster), and with the embedded server's speed-ups installed unless
`ANNOTATION_SERVER_SPEEDUPS=0`. Runs in the server's venv, where `annotation_server` is installed.
"""

import os

import pytest

SPEEDUPS = os.environ.get("ANNOTATION_SERVER_SPEEDUPS", "1") == "1"


@pytest.fixture(scope="session")
def elasticsearch_config() -> dict:
    return {}


@pytest.fixture(scope="session", autouse=True)
def opensearch() -> None:
    """In place of the fixture that connects to OpenSearch to delete the test indexes."""


if SPEEDUPS:
    from argilla_server.bulk import records_bulk
    from argilla_server.webhooks.v1 import records as record_webhooks

    from annotation_server import patches

    patches.install_speedups()
    assert records_bulk.notify_record_event_v1 is not record_webhooks.notify_record_event, "speed-ups not installed"
