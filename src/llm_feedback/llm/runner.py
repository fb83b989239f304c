"""Drives many requests through one backend: bounded in-flight requests, an optional requests-per-minute limit,
a timeout on every attempt, and retries with exponential backoff and jitter that honour Retry-After up to
backoff_max_s. Whatever happens to one request ends as that request's outcome, never as the run's crash."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from llm_feedback.errors import PipelineError
from llm_feedback.llm.base import Backend, Completion, PermanentError, Request, TransientError
from llm_feedback.secrets import scrub


@dataclass(frozen=True, kw_only=True)
class Limits:
    concurrency: int
    requests_per_minute: float | None
    timeout_s: float | None
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float


@dataclass(frozen=True)
class Outcome:
    completion: Completion | None
    latency_s: float | None
    attempts: int
    error: str | None


def server_aware_wait(limits: Limits) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, never sooner than the server's Retry-After, never longer than backoff_max_s
    (a server asking for hours is retried at the cap, and the row fails once the attempts run out)."""
    backoff = wait_exponential_jitter(
        multiplier=limits.backoff_initial_s, jitter=limits.backoff_initial_s, max=limits.backoff_max_s
    )

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return min(max(backoff(state), retry_after or 0.0), limits.backoff_max_s)

    return wait


def _failure(error: TransientError | PermanentError, attempts: int, limits: Limits) -> str:
    """A failed request's error as recorded: the cause, a Retry-After the run would not wait for, the attempts."""
    message = str(error)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and retry_after > limits.backoff_max_s:
        message += (
            f"; the server asked for Retry-After {retry_after:g} s, more than generate.backoff_max_s "
            f"({limits.backoff_max_s:g} s)"
        )
    return scrub(f"{message} (after {attempts} attempt{'s' * (attempts > 1)})")


async def run_requests(
    backend: Backend,
    requests: Sequence[Request],
    limits: Limits,
    on_done: Callable[[int, Outcome], None],
) -> None:
    """Send every request; `on_done(index, outcome)` is called as each one finishes, in completion order."""
    slots = asyncio.Semaphore(limits.concurrency)
    pace = AsyncLimiter(1, 60.0 / limits.requests_per_minute) if limits.requests_per_minute else None

    async def attempt(request: Request) -> tuple[Completion, float]:
        async with slots:
            if pace is not None:
                await pace.acquire()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limits.timeout_s):
                    completion = await backend.complete(request)
            except TimeoutError:
                raise TransientError(f"timed out after {limits.timeout_s:g} s") from None
            except (TransientError, PermanentError, PipelineError):
                raise
            except Exception as e:  # noqa: BLE001 (a reply a client library could not handle: a row error, not a crash)
                raise PermanentError(f"{type(e).__name__}: {scrub(str(e))[:200]}") from None
            if not completion.text.strip():
                reason = completion.finish_reason
                raise PermanentError("empty answer" + (f" (finish_reason: {reason})" if reason else ""))
            latency = time.perf_counter() - started
            # Scrubbed of known key values only: an answer may well hold code with `sk-...` literals.
            return dataclasses.replace(completion, text=scrub(completion.text, shapes=False)), latency

    async def one(index: int, request: Request) -> None:
        attempts = 0
        try:
            async for retry in AsyncRetrying(
                stop=stop_after_attempt(limits.max_attempts),
                wait=server_aware_wait(limits),
                retry=retry_if_exception_type(TransientError),
                reraise=True,
            ):
                with retry:
                    attempts += 1
                    completion, latency = await attempt(request)
        except (TransientError, PermanentError) as e:
            outcome = Outcome(None, None, attempts, _failure(e, attempts, limits))
        else:
            outcome = Outcome(completion, latency, attempts, None)
        on_done(index, outcome)

    async with asyncio.TaskGroup() as group:
        for index, request in enumerate(requests):
            group.create_task(one(index, request))
