"""Generations (and the judge's and execute's artifacts) with chosen contents, for tests and benchmarks that start
after generate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from llm_feedback.artifacts import EXECUTIONS, GENERATIONS, JUDGMENTS


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


def judged_and_run(
    task_ids: Sequence[str], models: Sequence[str], *, score: int, rationale: str
) -> tuple[pa.Table, pa.Table]:
    """The judge's and execute's artifacts for every (task, model): the same score and reasoning, and a passing run
    of one test, as push shows them to annotators."""
    pairs = [(t, m) for t in task_ids for m in models]
    judgments = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "judge": "judge-llm",
                "score": score,
                "rationale": rationale,
                "request_hash": "h",
            }
            for t, m in pairs
        ],
        schema=JUDGMENTS.schema,
    )
    executions = pa.Table.from_pylist(
        [
            {"task_id": t, "model": m, "status": "pass", "tests_passed": 1, "tests_total": 1, "run_hash": "r"}
            for t, m in pairs
        ],
        schema=EXECUTIONS.schema,
    )
    return judgments, executions
