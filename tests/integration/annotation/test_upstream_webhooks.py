"""argilla-server 2.8.0's own API tests for webhook events, run against the embedded server's patched code.

Each of the 23 `*_enqueue_webhook_*_event(s)` tests writes a webhook straight into the database (a factory, not the
webhooks API), calls an endpoint and checks that the event was enqueued in rq's queue. They must pass with our
speed-ups installed exactly as on stock code: a webhook made by any means is heard by the next event.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.annotation.conftest import free_port
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
