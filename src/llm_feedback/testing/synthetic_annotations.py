"""Annotations as pull writes them, made up with known truths: each model has a true mean quality and each annotator
a bias, so tests (and bench/analyze.py) know what analyze should find. The table builders are shared with
`simulated_study`, whose generative model is richer."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_feedback.artifacts import ANNOTATIONS, GENERATIONS, text_sha

STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def response_text(task_id: str, model: str) -> str:
    return f"```python\n# {model} answers {task_id}\n```"


def generations_table(
    task_id: pa.Array | list[str],
    model: pa.Array | list[str],
    response: list[str],
    completion_tokens: np.ndarray | None = None,
) -> pa.Table:
    """The generations artifact of one answer per row, every call a first-attempt success."""
    n = len(response)
    tokens = np.full(n, 20) if completion_tokens is None else completion_tokens
    return GENERATIONS.validate(
        pa.table(
            {
                "task_id": task_id,
                "model": model,
                "response": pa.array(response, pa.string()),
                "finish_reason": pa.array(["stop"] * n, pa.string()),
                "prompt_tokens": pa.array(np.full(n, 10), pa.int64()),
                "completion_tokens": pa.array(tokens, pa.int64()),
                "latency_s": pa.array(np.full(n, 0.1), pa.float64()),
                "attempts": pa.array(np.ones(n, dtype=np.int64), pa.int64()),
                "error": pa.nulls(n, pa.string()),
                "request_hash": pc.binary_join_element_wise(task_id, model, ""),
            }
        ),
        "generations",
    )


def annotations_table(
    *,
    record_id: pa.Array,
    task_id: pa.Array,
    annotator: pa.Array,
    model: pa.Array,
    position: np.ndarray,
    response_sha: pa.Array,
    score: pa.Array | np.ndarray,
    status: pa.Array | list[str],
) -> pa.Table:
    """The annotations artifact, one row per (record, annotator, model); nothing to correct, no comments."""
    n = len(position)
    return ANNOTATIONS.validate(
        pa.table(
            {
                "record_id": record_id,
                "task_id": task_id,
                "annotator": annotator,
                "model": model,
                "position": pa.array(position, pa.int64()),
                "response_sha": response_sha,
                "score": pa.array(score, pa.int64()),
                "status": pa.array(status, pa.string()),
                "to_correct": pa.nulls(n, pa.string()),
                "corrected_response": pa.nulls(n, pa.string()),
                "comments": pa.nulls(n, pa.string()),
                "updated_at": pa.array([STAMP] * n, pa.timestamp("us", tz="UTC")),
                "problem": pa.nulls(n, pa.string()),
            }
        ),
        "annotations",
    )


def generations_for(task_ids: list[str], models: list[str]) -> pa.Table:
    return generations_table(
        [t for _ in models for t in task_ids],
        [m for m in models for _ in task_ids],
        [response_text(t, m) for m in models for t in task_ids],
    )


def annotations_for(
    task_ids: list[str], quality: dict[str, float], bias: dict[str, float], noise: float = 1.0, seed: int = 0
) -> pa.Table:
    """Every annotator submits a score for every model on every task: clip(round(quality + bias + noise), 0, 7)."""
    rng = np.random.default_rng(seed)
    models, annotators = list(quality), list(bias)
    n, m, a = len(task_ids), len(models), len(annotators)
    order = np.argsort(rng.random((n, m)), axis=1)  # the model at each display position, per task
    true = np.array([quality[x] for x in models])[order]  # (n, m) by position
    offsets = np.array([bias[x] for x in annotators])
    raw = true[:, None, :] + offsets[None, :, None] + rng.normal(0, noise, (n, a, m))
    scores = np.clip(np.rint(raw), 0, 7).astype(np.int64)  # (n, a, m)
    model_at = np.array(models)[order]  # (n, m)
    shas = {(t, x): text_sha(response_text(t, x)) for t in task_ids for x in models}
    task = np.repeat(np.array(task_ids), a * m)
    model = np.repeat(model_at[:, None, :], a, axis=1).reshape(-1)
    return annotations_table(
        record_id=pa.array(task),
        task_id=pa.array(task),
        annotator=pa.array(np.tile(np.repeat(np.array(annotators), m), n)),
        model=pa.array(model),
        position=np.tile(np.arange(1, m + 1), n * a),
        response_sha=pa.array([shas[(t, x)] for t, x in zip(task, model)]),
        score=scores.reshape(-1),
        status=["submitted"] * (n * a * m),
    )
