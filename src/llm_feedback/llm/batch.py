"""The one way the stages ask models anything: requests keyed by id in, an answer per id out.

Each request is identified by a hash of everything that determines its answer, and each answer is saved in the
stage's request cache the moment it arrives, so nothing is paid for twice: answers in the cache, or in the stage's
earlier artifact, are never asked again, and a run that was killed sends only what is missing. Every model runs at
once, each with its own concurrency, pacing and retries; a progress bar per model is labelled by the stage, and a
summary per model is held against the error budget once the stage has saved its artifact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from llm_feedback.adapters import tuned_identity
from llm_feedback.errors import PipelineError
from llm_feedback.llm.base import Backend, Request
from llm_feedback.llm.cache import CachedGeneration, GenerationCache
from llm_feedback.llm.progress import Progress
from llm_feedback.llm.runner import Limits, Outcome, run_requests
from llm_feedback.params import GenerateParams, ModelSpec
from llm_feedback.secrets import register_secret_variable

BackendFactory = Callable[[str, ModelSpec], Backend]
# huggingface_hub's async client opens at most this many connections; more in flight would only queue in its pool
# and eat into their timeouts.
HF_MAX_CONNECTIONS = 100

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Answer:
    """One request's fate: the answer (`text`) with what it cost, or the error it failed with."""

    request_hash: str
    text: str | None  # None: the request failed, `error` says why
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    attempts: int
    error: str | None
    cached: bool  # answered before this run (the cache or an earlier artifact): nothing was sent


@dataclass
class ModelSummary:
    model: str
    total: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None

    @property
    def ok(self) -> int:
        return self.total - self.failed

    @property
    def error_rate(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def check_error_budget(self, limit: float) -> None:
        """Called after everything is saved: too many failed requests fail the stage, naming the first error."""
        if self.error_rate > limit:
            raise PipelineError(
                f"{self.model}: {self.failed} of {self.total} requests failed "
                f"({self.error_rate:.0%} > generate.max_error_rate {limit:.0%}; rerun to retry them); "
                f"first error: {self.first_error}"
            )

    def line(self) -> str:
        p50, p95 = np.percentile(self.latencies, [50, 95]) if self.latencies else (float("nan"),) * 2
        return (
            f"{self.model}: {self.ok} ok, {self.failed} failed, {self.prompt_tokens + self.completion_tokens} tokens "
            f"({self.prompt_tokens} prompt + {self.completion_tokens} completion), latency p50 {p50:.2f} s, "
            f"p95 {p95:.2f} s; {self.cached} from cache, {self.total - self.cached} sent"
        )


@dataclass(frozen=True)
class Batch(Generic[K]):
    answers: dict[K, Answer]  # in the requests' order
    summaries: list[ModelSummary]  # one per model, in order of its first request


def endpoint_identity(spec: ModelSpec) -> str | None:
    """Where the model is served, without credentials or query strings (they change nothing in the answer). Of
    replicas, the first names them all: the hash stays whichever answers, and with other replicas added or removed."""
    url = spec.base_urls[0] if spec.base_urls else spec.endpoint_url
    if url is None:
        return f"provider:{spec.provider or 'auto'}" if spec.backend == "hf" else None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def request_hash(spec: ModelSpec, request: Request) -> str:
    key = {
        "backend": spec.backend,
        "model": spec.model,
        "endpoint": endpoint_identity(spec),
        "input": request.prompt if spec.needs_prompt else request.messages,
        "generation": request.generation.model_dump(),
    }
    if request.json_schema is not None:  # only then, so requests without it keep their hashes
        key["json_schema"] = request.json_schema
    key.update(tuned_identity(spec))  # empty unless the model is tuned: other models keep their hashes
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def ask(
    requests: Mapping[K, Request],
    *,
    models: Mapping[str, ModelSpec],
    settings: GenerateParams,
    cache_path: Path,
    make_backend: BackendFactory,
    label: str,
    earlier: Iterable[tuple[str, CachedGeneration]] = (),
) -> Batch[K]:
    """Answer every request (each names its model in `models`); `earlier` holds answers by request hash from the
    stage's previous artifact (e.g. after `dvc pull`), which count as cached. `label` names the stage in progress
    lines."""
    for spec in models.values():
        register_secret_variable(spec.api_key_env)
    hashes = {key: request_hash(models[request.model], request) for key, request in requests.items()}
    cache = GenerationCache(cache_path)
    try:
        wanted = set(hashes.values())
        cache.put_many([(h, answer) for h, answer in earlier if h in wanted and answer.response.strip()])
        cached = cache.lookup(hashes.values())
        pending = {key: request for key, request in requests.items() if hashes[key] not in cached}
        try:
            outcomes = asyncio.run(_send(pending, hashes, models, settings, cache, make_backend, label))
        except* PipelineError as group:
            raise _first(group) from None  # e.g. a model that cannot load: one line, not a task group's traceback
        found = cache.lookup(hashes.values())
    finally:
        cache.close()
    answers = {key: _answer(h, found.get(h), outcomes.get(key), cached=key not in pending) for key, h in hashes.items()}
    return Batch(answers, _summaries(requests, answers))


async def _send(
    pending: Mapping[K, Request],
    hashes: Mapping[K, str],
    models: Mapping[str, ModelSpec],
    settings: GenerateParams,
    cache: GenerationCache,
    make_backend: BackendFactory,
    label: str,
) -> dict[K, Outcome]:
    by_model: dict[str, list[K]] = {}
    for key, request in pending.items():
        by_model.setdefault(request.model, []).append(key)
    outcomes: dict[K, Outcome] = {}
    # Every backend before any request or progress line (none opens a connection yet): a missing key stops the run
    # with nothing sent.
    backends = {name: make_backend(name, models[name]) for name in by_model}
    progress = Progress({name: len(keys) for name, keys in by_model.items()}, settings.progress_every_s, label=label)
    try:
        async with asyncio.TaskGroup() as group:
            for name, keys in by_model.items():

                def on_done(i: int, outcome: Outcome, keys: list[K] = keys, name: str = name) -> None:
                    key = keys[i]
                    outcomes[key] = outcome
                    if outcome.completion is not None:
                        c = outcome.completion
                        cache.put(
                            hashes[key],
                            CachedGeneration(
                                c.text,
                                c.finish_reason,
                                c.prompt_tokens,
                                c.completion_tokens,
                                outcome.latency_s or 0.0,
                                outcome.attempts,
                            ),
                        )
                    progress.advance(name, outcome.completion is not None)

                limits = _limits(models[name], settings)
                group.create_task(run_requests(backends[name], [pending[key] for key in keys], limits, on_done))
    finally:
        progress.close()
        for backend in backends.values():
            await backend.aclose()
    return outcomes


def _first(group: BaseExceptionGroup) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _limits(spec: ModelSpec, run: GenerateParams) -> Limits:
    local = spec.backend == "transformers"
    # Per server: each replica takes as many as one server would, so replicas add throughput.
    concurrency = (spec.concurrency or run.concurrency) * max(len(spec.base_urls), 1)
    if spec.backend == "hf":
        concurrency = min(concurrency, HF_MAX_CONNECTIONS)
    return Limits(
        # A local model batches whatever is in flight, so in-flight requests are one batch.
        concurrency=run.batch_size if local else concurrency,
        requests_per_minute=None if local else spec.requests_per_minute or run.requests_per_minute,
        timeout_s=None if local else run.timeout_s,
        max_attempts=1 if local else run.max_attempts,
        backoff_initial_s=run.backoff_initial_s,
        backoff_max_s=run.backoff_max_s,
    )


def _answer(request_hash: str, hit: CachedGeneration | None, outcome: Outcome | None, *, cached: bool) -> Answer:
    """The cache's copy when there is one (also for a request sent twice in this run), else the failure."""
    if hit is not None:
        return Answer(
            request_hash,
            hit.response,
            hit.finish_reason,
            hit.prompt_tokens,
            hit.completion_tokens,
            hit.latency_s,
            hit.attempts,
            None,
            cached,
        )
    assert outcome is not None  # not in the cache, so it was sent
    return Answer(request_hash, None, None, None, None, None, outcome.attempts, outcome.error, cached)


def _summaries(requests: Mapping[K, Request], answers: Mapping[K, Answer]) -> list[ModelSummary]:
    summaries: dict[str, ModelSummary] = {}
    for key, request in requests.items():
        summary = summaries.setdefault(request.model, ModelSummary(request.model))
        answer = answers[key]
        summary.total += 1
        summary.cached += answer.cached
        if answer.text is None:
            summary.failed += 1
            summary.first_error = summary.first_error or answer.error
            continue
        summary.prompt_tokens += answer.prompt_tokens or 0
        summary.completion_tokens += answer.completion_tokens or 0
        summary.latencies.append(answer.latency_s or 0.0)
    return list(summaries.values())
