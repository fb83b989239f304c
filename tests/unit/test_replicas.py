"""Which replica takes the next request: the fewest outstanding, failing ones rested and probed back, a failed
request retried elsewhere, and a wait when every replica rests. Real asyncio, real (short) rests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack

import pytest

from llm_feedback.llm.base import PermanentError, TransientError
from llm_feedback.llm.replicas import REST_AFTER, Replicas

URLS = ["http://a", "http://b", "http://c"]


def picker(urls: list[str] = URLS, rest_s: float = 0.05, rest_max_s: float = 1.0) -> Replicas:
    return Replicas(urls, rest_s=rest_s, rest_max_s=rest_max_s)


async def open_request(replicas: Replicas, key: object) -> tuple[str, AsyncExitStack]:
    """A request in flight until the returned stack closes, and the URL it got."""
    stack = AsyncExitStack()
    return await stack.enter_async_context(replicas.use(key)), stack


async def hold(replicas: Replicas, stack: AsyncExitStack, count: int, first_key: int = 0) -> list[str]:
    """`count` requests in flight at once, kept open until `stack` closes; the URL each got."""
    return [await stack.enter_async_context(replicas.use(first_key + i)) for i in range(count)]


async def attempt(replicas: Replicas, key: object, *, failing: set[str], error: Exception | None = None) -> str:
    """One finished attempt: it fails with TransientError (or `error`) on a URL in `failing`."""
    try:
        async with replicas.use(key) as url:
            if url in failing:
                raise error or TransientError("connection failed")
    except (TransientError, PermanentError):
        pass
    return url


async def rest(replicas: Replicas, url: str) -> None:
    """Fail `url` until it rests (each attempt a request of its own)."""
    failed = 0
    for key in range(1000):
        if await attempt(replicas, ("rest", key), failing={url}) == url:
            failed += 1
        if failed == REST_AFTER:
            return
    raise AssertionError(f"{url} was never picked")


def test_each_request_goes_to_the_replica_with_fewest_outstanding() -> None:
    async def main() -> None:
        replicas = picker()
        held = [await open_request(replicas, key) for key in range(6)]
        assert Counter(url for url, _ in held) == dict.fromkeys(URLS, 2)
        for url, request in held:
            if url == "http://b":
                await request.aclose()
        more = [await open_request(replicas, key) for key in range(10, 12)]
        assert [url for url, _ in more] == ["http://b", "http://b"]
        for _, request in held + more:
            await request.aclose()

    asyncio.run(main())


def test_ties_are_taken_in_turn() -> None:
    async def main() -> None:
        replicas = picker()
        urls = [await attempt(replicas, key, failing=set()) for key in range(30)]
        assert Counter(urls) == dict.fromkeys(URLS, 10)

    asyncio.run(main())


def test_a_failing_replica_rests_then_one_probe_brings_it_back() -> None:
    async def main() -> None:
        replicas = picker(rest_s=0.1)
        await rest(replicas, "http://a")
        assert {await attempt(replicas, key, failing=set()) for key in range(20)} == {"http://b", "http://c"}
        await asyncio.sleep(0.12)
        async with AsyncExitStack() as stack:
            held = await hold(replicas, stack, 9)
            assert held.count("http://a") == 1  # back from its rest, it takes one request until that succeeds
        async with AsyncExitStack() as stack:
            assert Counter(await hold(replicas, stack, 9, first_key=100)) == dict.fromkeys(URLS, 3)

    asyncio.run(main())


def test_a_probe_that_fails_doubles_the_rest_up_to_the_cap() -> None:
    async def main() -> None:
        replicas = picker(rest_s=0.05, rest_max_s=0.15)
        a = replicas.replicas[0]
        await rest(replicas, "http://a")
        lengths = [a.back_at - a.rested_at]
        for probe in range(3):
            await asyncio.sleep(a.back_at - time.monotonic() + 0.01)
            for key in range(10):  # until one lands on a (ties go in turn), and fails
                if await attempt(replicas, (probe, key), failing={"http://a"}) == "http://a":
                    break
            lengths.append(a.back_at - a.rested_at)
        assert lengths == pytest.approx([0.05, 0.1, 0.15, 0.15])

    asyncio.run(main())


def test_failures_sent_before_a_rest_do_not_lengthen_it() -> None:
    async def main() -> None:
        replicas = picker(["http://a", "http://b"], rest_s=0.05)
        a = replicas.replicas[0]
        # eight in flight, four of them on a, all failing at once
        ends = await asyncio.gather(*(fail_on_a(replicas, key) for key in range(8)), return_exceptions=True)
        assert sum(isinstance(end, TransientError) for end in ends) == 4
        assert (a.rests, a.outstanding) == (1, 0)
        assert a.back_at - a.rested_at == pytest.approx(0.05)

    asyncio.run(main())


async def fail_on_a(replicas: Replicas, key: int) -> None:
    async with replicas.use(key) as url:
        await asyncio.sleep(0.01)
        if url == "http://a":
            raise TransientError("server disconnected")


def test_a_failed_request_is_retried_on_another_replica() -> None:
    async def main() -> None:
        replicas = picker(["http://a", "http://b"])
        first = await attempt(replicas, "row", failing=set(URLS))
        held = [await open_request(replicas, key) for key in range(2)]
        for url, request in held:
            if url == first:
                await request.aclose()  # the replica it failed on now has the fewest outstanding
        assert await attempt(replicas, "row", failing=set()) != first
        assert await attempt(replicas, "another", failing=set()) == first
        for _, request in held:
            await request.aclose()

    asyncio.run(main())


def test_a_timeout_counts_against_the_replica_and_an_error_reply_does_not() -> None:
    async def main() -> None:
        replicas = picker(["http://a", "http://b"], rest_s=10, rest_max_s=10)
        a, b = replicas.replicas
        for key in range(20):
            await attempt(replicas, ("bad", key), failing={"http://b"}, error=PermanentError("HTTP 400"))
        assert (b.failures, b.rests) == (0, 0)
        for key in range(2 * REST_AFTER):
            try:
                async with asyncio.timeout(0.01), replicas.use(("slow", key)) as url:
                    if url == "http://a":
                        await asyncio.sleep(1)
            except TimeoutError:
                pass
        assert a.rests == 1 and a.back_at > time.monotonic() + 5

    asyncio.run(main())


def test_with_every_replica_resting_a_request_waits_for_the_first_back() -> None:
    async def main() -> None:
        replicas = picker(["http://a", "http://b"], rest_s=0.2)
        await rest(replicas, "http://a")
        await asyncio.sleep(0.1)
        await rest(replicas, "http://b")
        started = time.monotonic()
        async with replicas.use("waits") as url:
            waited = time.monotonic() - started
        assert url == "http://a"
        assert 0.05 < waited < 0.2

    asyncio.run(main())


def test_a_lone_server_never_rests() -> None:
    async def main() -> None:
        replicas = picker(["http://only"], rest_s=10)
        for key in range(3 * REST_AFTER):
            await attempt(replicas, key, failing={"http://only"})
        started = time.monotonic()
        assert await attempt(replicas, "next", failing=set()) == "http://only"
        assert time.monotonic() - started < 0.05
        assert replicas.replicas[0].rests == 0

    asyncio.run(main())
