"""The generate stage's logic: prompts in, one generation per (task, model) out, paying for each request once.

Each request is identified by a hash of everything that determines its answer. Answers already in the cache, or
in the previous generations artifact (so a teammate's `dvc pull` counts as a cache), are never asked again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from llm_feedback.artifacts import GENERATIONS
from llm_feedback.errors import InputError, PipelineError
from llm_feedback.llm.base import Backend, Request
from llm_feedback.llm.cache import CachedGeneration, GenerationCache
from llm_feedback.llm.progress import Progress
from llm_feedback.llm.runner import Limits, Outcome, run_requests
from llm_feedback.params import ModelSpec, Params
from llm_feedback.secrets import register_secret_variable

BackendFactory = Callable[[str, ModelSpec], Backend]
# huggingface_hub's async client opens at most this many connections; more in flight would only queue in its pool
# and eat into their timeouts.
HF_MAX_CONNECTIONS = 100


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
        p50, p95 = (np.percentile(self.latencies, [50, 95]) if self.latencies else (float("nan"),) * 2)
        return (
            f"{self.model}: {self.ok} ok, {self.failed} failed, {self.prompt_tokens + self.completion_tokens} tokens "
            f"({self.prompt_tokens} prompt + {self.completion_tokens} completion), latency p50 {p50:.2f} s, "
            f"p95 {p95:.2f} s; {self.cached} from cache, {self.total - self.cached} sent"
        )


def endpoint_identity(spec: ModelSpec) -> str | None:
    """Where the model is served, without credentials or query strings (they change nothing in the answer)."""
    url = spec.base_url or spec.endpoint_url
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
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def generate(
    prompts: pa.Table,
    params: Params,
    cache_path: Path,
    previous: pa.Table | None,
    make_backend: BackendFactory,
    json_schema: dict | None = None,
) -> tuple[pa.Table, list[ModelSummary]]:
    """Answer every prompt row; returns the generations table (prompts' row order) and a summary per model.
    `json_schema` asks every backend that can for JSON of that shape (the judge's verdicts)."""
    for spec in params.models.values():
        register_secret_variable(spec.api_key_env)
    rows = prompts.select(["task_id", "model", "messages", "prompt"]).to_pylist()
    missing = [name for name in params.compare if name not in {r["model"] for r in rows}]
    if missing:
        raise InputError(f"{params.paths.prompts}: no prompts for model '{missing[0]}' (rerun the format stage)")
    rows = [r for r in rows if r["model"] in params.compare]
    generation = {name: params.models[name].generation_params(params.generation) for name in params.compare}
    requests = [Request(r["messages"], r["prompt"], generation[r["model"]], json_schema) for r in rows]
    hashes = [request_hash(params.models[r["model"]], q) for r, q in zip(rows, requests)]

    cache = GenerationCache(cache_path)
    try:
        if previous is not None:
            cache.put_many(_successes(previous, set(hashes)))
        cached = cache.lookup(hashes)
        pending = [i for i, h in enumerate(hashes) if h not in cached]
        try:
            outcomes = asyncio.run(_send(pending, rows, requests, hashes, params, cache, make_backend))
        except* PipelineError as group:
            raise _first(group) from None  # e.g. a model that cannot load: one line, not a task group's traceback
        cached = cache.lookup(hashes)
    finally:
        cache.close()
    return _table(rows, hashes, cached, outcomes), _summaries(params.compare, rows, hashes, cached, outcomes, pending)


async def _send(
    pending: list[int],
    rows: list[dict],
    requests: list[Request],
    hashes: list[str],
    params: Params,
    cache: GenerationCache,
    make_backend: BackendFactory,
) -> dict[int, Outcome]:
    by_model: dict[str, list[int]] = {name: [] for name in params.compare}
    for i in pending:
        by_model[rows[i]["model"]].append(i)
    by_model = {name: indexes for name, indexes in by_model.items() if indexes}
    outcomes: dict[int, Outcome] = {}
    # Every backend before any request or progress line (none opens a connection yet): a missing key stops the run
    # with nothing sent.
    backends = {name: make_backend(name, params.models[name]) for name in by_model}
    progress = Progress({name: len(ix) for name, ix in by_model.items()}, params.generate.progress_every_s)
    try:
        async with asyncio.TaskGroup() as group:
            for name, indexes in by_model.items():

                def on_done(k: int, outcome: Outcome, indexes: list[int] = indexes, name: str = name) -> None:
                    i = indexes[k]
                    outcomes[i] = outcome
                    if outcome.completion is not None:
                        c = outcome.completion
                        cache.put(
                            hashes[i],
                            CachedGeneration(
                                c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens, outcome.latency_s or 0.0,
                                outcome.attempts,
                            ),
                        )
                    progress.advance(name, outcome.completion is not None)

                group.create_task(
                    run_requests(backends[name], [requests[i] for i in indexes], _limits(params, name), on_done)
                )
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


def _limits(params: Params, name: str) -> Limits:
    spec, run = params.models[name], params.generate
    local = spec.backend == "transformers"
    concurrency = spec.concurrency or run.concurrency
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


def _successes(previous: pa.Table, wanted: set[str]) -> list[tuple[str, CachedGeneration]]:
    """Rows of an earlier artifact (e.g. from `dvc pull`) that answer requests of this run."""
    found = []
    for r in previous.to_pylist():
        if r["request_hash"] in wanted and r["error"] is None and (r["response"] or "").strip():
            found.append(
                (
                    r["request_hash"],
                    CachedGeneration(
                        r["response"], r["finish_reason"], r["prompt_tokens"], r["completion_tokens"],
                        r["latency_s"] or 0.0, r["attempts"],
                    ),
                )
            )
    return found


def _table(
    rows: list[dict], hashes: list[str], cached: dict[str, CachedGeneration], outcomes: dict[int, Outcome]
) -> pa.Table:
    records = []
    for i, (row, h) in enumerate(zip(rows, hashes)):
        hit = cached.get(h)
        base = {"task_id": row["task_id"], "model": row["model"], "request_hash": h}
        if hit is not None:
            records.append(
                {**base, "response": hit.response, "finish_reason": hit.finish_reason, "prompt_tokens": hit.prompt_tokens,
                 "completion_tokens": hit.completion_tokens, "latency_s": hit.latency_s, "attempts": hit.attempts,
                 "error": None}
            )
        else:
            outcome = outcomes[i]
            records.append(
                {**base, "response": None, "finish_reason": None, "prompt_tokens": None, "completion_tokens": None,
                 "latency_s": None, "attempts": outcome.attempts, "error": outcome.error}
            )
    return pa.Table.from_pylist(records, schema=GENERATIONS.schema)


def _summaries(
    compare: list[str],
    rows: list[dict],
    hashes: list[str],
    cached: dict[str, CachedGeneration],
    outcomes: dict[int, Outcome],
    pending: list[int],
) -> list[ModelSummary]:
    summaries = {name: ModelSummary(name) for name in compare}
    sent = set(pending)
    for i, (row, h) in enumerate(zip(rows, hashes)):
        summary = summaries[row["model"]]
        summary.total += 1
        summary.cached += i not in sent
        hit = cached.get(h)
        if hit is None:
            summary.failed += 1
            summary.first_error = summary.first_error or outcomes[i].error
            continue
        summary.prompt_tokens += hit.prompt_tokens or 0
        summary.completion_tokens += hit.completion_tokens or 0
        summary.latencies.append(hit.latency_s)
    return list(summaries.values())
