"""Webhook events with the embedded server's speed-ups: a webhook made by any means is heard by the next change.

argilla-server 2.8.0's own API tests: each of the 23 `*_enqueue_webhook_*_event(s)` tests writes a webhook straight
into the database (a factory, not the webhooks API), calls an endpoint and checks that the event was enqueued in rq's
queue. They must pass with our speed-ups installed exactly as on stock code. And on the running server: a webhook
written into its database by another process is heard by the next bulk log, and silent once disabled there.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_feedback.testing.ports import free_port
from tests.integration.annotation.conftest import RunningServer
from tests.integration.annotation.upstream import UpstreamTests, running_redis

pytestmark = pytest.mark.slow

WEBHOOK_EVENT_TESTS = re.compile(r"_enqueue_webhook_\w*_event")
EXPECTED_COUNT = 23  # in argilla-server 2.8.0's sdist


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis"), free_port()) as url:
        yield url


@pytest.mark.parametrize("speedups", [False, True], ids=["stock", "speedups"])
def test_argilla_webhook_event_tests_pass(
    argilla_upstream_tests: UpstreamTests, redis_url: str, tmp_path: Path, speedups: bool
) -> None:
    expected = argilla_upstream_tests.tests_named(WEBHOOK_EVENT_TESTS)
    assert len(expected) == EXPECTED_COUNT, sorted(expected)
    results = argilla_upstream_tests.run(
        sorted(set(expected.values())),
        keyword="enqueue_webhook and event",
        env={
            "ARGILLA_REDIS_URL": f"{redis_url}/{int(speedups)}",  # a Redis database each
            "ANNOTATION_SERVER_SPEEDUPS": str(int(speedups)),
        },
        data_dir=tmp_path,
    )
    assert set(results) == set(expected)
    assert {name: outcome for name, outcome in results.items() if outcome != "passed"} == {}


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str]]

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.received.append((payload["type"], payload["data"]["fields"]["text"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_webhook_written_by_another_process_is_heard_by_the_next_bulk_log(argilla_server: RunningServer) -> None:
    rg = pytest.importorskip("argilla")
    received: list[tuple[str, str]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Receiver", (_Receiver,), {"received": received}))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.api_key, retries=1)
    workspace = rg.Workspace(name="webhook-events", client=client).create()
    settings = rg.Settings(
        fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])]
    )
    dataset = rg.Dataset(name="heard", workspace=workspace, settings=settings, client=client).create()
    through_api = rg.Webhook(url=url, events=["response.deleted"], _client=client).create()
    database = sqlite3.connect(argilla_server.data_dir / "argilla.db", timeout=30)
    written = uuid.uuid4().hex
    try:
        dataset.records.log([rg.Record(fields={"text": "before"})])  # the server has looked up its webhooks
        with database:  # a copy of the API's row, listening to record.created
            database.execute(
                "INSERT INTO webhooks (id, url, secret, events, enabled, description, inserted_at, updated_at) "
                "SELECT ?, url, secret, ?, 1, 'written with SQL', inserted_at, updated_at FROM webhooks WHERE id = ?",
                (written, json.dumps(["record.created"]), through_api.id.hex),
            )
        dataset.records.log([rg.Record(fields={"text": f"after {i}"}) for i in range(3)])
        deadline = time.monotonic() + 20
        while len(received) < 3:
            assert time.monotonic() < deadline, received
            time.sleep(0.05)
        with database:
            database.execute("UPDATE webhooks SET enabled = 0 WHERE id = ?", (written,))
        dataset.records.log([rg.Record(fields={"text": "disabled"})])
        time.sleep(0.5)  # a delivery would take milliseconds
        assert sorted(received) == [("record.created", f"after {i}") for i in range(3)]
    finally:
        with database:
            database.execute("DELETE FROM webhooks WHERE id = ?", (written,))
        database.close()
        through_api.delete()
        httpd.shutdown()
        dataset.delete()
