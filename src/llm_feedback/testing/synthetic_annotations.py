"""Annotations as pull writes them, made up with known truths: each model has a true mean quality and each annotator
a bias, so tests (and bench/analyze.py) know what analyze should find."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from llm_feedback.artifacts import ANNOTATIONS, GENERATIONS, text_sha


def generations_for(task_ids: list[str], models: list[str]) -> pa.Table:
    n = len(task_ids)
    return GENERATIONS.validate(
        pa.table(
            {
                "task_id": [t for m in models for t in task_ids],
                "model": [m for m in models for _ in task_ids],
                "response": [f"```python\n# {m} answers {t}\n```" for m in models for t in task_ids],
                "finish_reason": ["stop"] * (n * len(models)),
                "prompt_tokens": pa.array([10] * (n * len(models)), pa.int64()),
                "completion_tokens": pa.array([20] * (n * len(models)), pa.int64()),
                "latency_s": [0.1] * (n * len(models)),
                "attempts": pa.array([1] * (n * len(models)), pa.int64()),
                "error": pa.array([None] * (n * len(models)), pa.string()),
                "request_hash": [f"{t}{m}" for m in models for t in task_ids],
            }
        ),
        "generations",
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
    shas = {(t, x): text_sha(f"```python\n# {x} answers {t}\n```") for t in task_ids for x in models}
    task = np.repeat(np.array(task_ids), a * m)
    model = np.repeat(model_at[:, None, :], a, axis=1).reshape(-1)
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    return ANNOTATIONS.validate(
        pa.table(
            {
                "record_id": task,
                "task_id": task,
                "annotator": np.tile(np.repeat(np.array(annotators), m), n),
                "model": model,
                "position": pa.array(np.tile(np.arange(1, m + 1), n * a), pa.int64()),
                "response_sha": [shas[(t, x)] for t, x in zip(task, model)],
                "score": pa.array(scores.reshape(-1), pa.int64()),
                "status": ["submitted"] * (n * a * m),
                "to_correct": pa.array([None] * (n * a * m), pa.string()),
                "corrected_response": pa.array([None] * (n * a * m), pa.string()),
                "comments": pa.array([None] * (n * a * m), pa.string()),
                "updated_at": pa.array([stamp] * (n * a * m), pa.timestamp("us", tz="UTC")),
                "problem": pa.array([None] * (n * a * m), pa.string()),
            }
        ),
        "annotations",
    )
