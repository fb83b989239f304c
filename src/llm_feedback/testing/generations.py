"""A generations artifact with chosen answers, for tests and benchmarks that start after generate."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from llm_feedback.artifacts import GENERATIONS


def answered(responses: Mapping[tuple[str, str], str]) -> pa.Table:
    """One successful row per (task_id, model) with the given answer, in the mapping's order."""
    rows = [
        {
            "task_id": task_id,
            "model": model,
            "response": response,
            "finish_reason": "stop",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "latency_s": 0.1,
            "attempts": 1,
            "error": None,
            "request_hash": task_id + model,
        }
        for (task_id, model), response in responses.items()
    ]
    return pa.Table.from_pylist(rows, schema=GENERATIONS.schema)
