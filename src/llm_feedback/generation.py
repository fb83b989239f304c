"""The generate stage's logic: prompts in, one generation per (task, model) out, paying for each request once.

Each prompt row becomes one request at its model's sampling settings; the answers come through `llm.batch`, which
never asks again for what is in the request cache or in the previous generations artifact (so a teammate's
`dvc pull` counts as a cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from llm_feedback.artifacts import GENERATIONS
from llm_feedback.errors import InputError
from llm_feedback.llm.base import Request
from llm_feedback.llm.batch import BackendFactory, ModelSummary, ask
from llm_feedback.llm.cache import CachedGeneration
from llm_feedback.params import Params


@dataclass(frozen=True)
class Generations:
    table: pa.Table  # the generations artifact, in the prompts' row order
    summaries: list[ModelSummary]  # one per compared model

    def line(self, *, output: Path) -> str:
        return f"{self.table.num_rows} generations -> {output}"


def generate(
    *, prompts: pa.Table, params: Params, previous: pa.Table | None, make_backend: BackendFactory
) -> Generations:
    """Answer every prompt row of the compared models; `previous` is the stage's earlier artifact, if any."""
    rows = prompts.select(["task_id", "model", "messages", "prompt"]).to_pylist()
    missing = [name for name in params.compare if name not in {r["model"] for r in rows}]
    if missing:
        raise InputError(f"{params.paths.prompts}: no prompts for model '{missing[0]}' (rerun the format stage)")
    rows = [r for r in rows if r["model"] in params.compare]
    sampling = {name: params.models[name].generation_params(params.generation) for name in params.compare}
    requests = {
        i: Request(model=r["model"], messages=r["messages"], prompt=r["prompt"], generation=sampling[r["model"]])
        for i, r in enumerate(rows)
    }
    batch = ask(
        requests,
        models=params.models,
        settings=params.generate,
        cache_path=params.paths.generation_cache,
        make_backend=make_backend,
        label="generate",
        earlier=_earlier(previous),
    )
    records = []
    for i, row in enumerate(rows):
        a = batch.answers[i]
        records.append(
            {
                "task_id": row["task_id"],
                "model": row["model"],
                "response": a.text,
                "finish_reason": a.finish_reason,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "latency_s": a.latency_s,
                "attempts": a.attempts,
                "error": a.error,
                "request_hash": a.request_hash,
            }
        )
    return Generations(pa.Table.from_pylist(records, schema=GENERATIONS.schema), batch.summaries)


def _earlier(previous: pa.Table | None) -> list[tuple[str, CachedGeneration]]:
    """The answers of an earlier artifact (e.g. from `dvc pull`), by request hash."""
    if previous is None:
        return []
    return [
        (
            r["request_hash"],
            CachedGeneration(
                r["response"],
                r["finish_reason"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["latency_s"] or 0.0,
                r["attempts"],
            ),
        )
        for r in previous.to_pylist()
        if r["error"] is None and r["response"] is not None
    ]
