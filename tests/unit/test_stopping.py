"""The stopping rule on analyze's scores without a server: each pair's confidence sequence over the rounds, each
task's difference weighted by one over its chance of having been published, and stop only when every pair is decided."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from llm_feedback.annotation.receipt import Receipt
from llm_feedback.artifacts import ANNOTATIONS, text_sha
from llm_feedback.confidence_sequence import running
from llm_feedback.params import AnalyzeParams
from llm_feedback.stopping import stopping
from tests.integration.annotation.annotating import make_generations, make_tasks

MODELS = ["a", "b", "c"]


def rated(generations: pa.Table, scores: dict[str, list[int]], *, annotator: str = "r", status: str = "submitted"):
    """One annotator's rows: scores[model][i] on the i-th task."""
    answers = {
        (t, m): text
        for t, m, text in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response")))
    }
    tasks = sorted({t for t, _ in answers})
    rows = [
        {
            "record_id": task,
            "task_id": task,
            "annotator": annotator,
            "model": model,
            "position": position,
            "response_sha": text_sha(answers[task, model]),
            "score": scores[model][i],
            "status": status,
            "to_correct": None,
            "corrected_response": None,
            "comments": None,
            "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
            "problem": None,
        }
        for i, task in enumerate(tasks)
        for position, model in enumerate(MODELS, 1)
    ]
    return pa.Table.from_pylist(rows, schema=ANNOTATIONS.schema)


def receipt(tasks: list[str], chances: list[tuple[int, list[float]]], total: int) -> Receipt:
    rounds = max(first + len(since) - 1 for first, since in chances)
    return Receipt.model_validate(
        {
            "url": "http://x",
            "workspace": "w",
            "dataset": "d",
            "dataset_id": "id",
            "models": MODELS,
            "records": len(tasks),
            "settings_hash": "s",
            "content_hash": "c",
            "blinding": {
                t: {"task_id": t, "models": MODELS, "round": first, "probabilities": since}
                for t, (first, since) in zip(tasks, chances)
            },
            "rounds": [
                {"round": n, "tasks": total, "expected": 1.0, "drawn": 1, "seed": 0} for n in range(1, rounds + 1)
            ],
        }
    )


def test_each_pair_gets_its_sequence_over_the_rounds_weighted_by_the_chances() -> None:
    table = make_tasks(30)
    tasks = table.column("task_id").to_pylist()
    generations = make_generations(table, MODELS)
    rng = np.random.default_rng(3)
    a = rng.integers(4, 8, 30)
    scores = {"a": a.tolist(), "b": (a - rng.integers(0, 4, 30)).tolist(), "c": rng.integers(0, 8, 30).tolist()}
    # rounds 1 and 2; the chances of round 1's tasks grew at round 2
    chances = [(1, [0.2, 0.4]) if i < 12 else (2, [0.8 if i % 2 else 0.4]) for i in range(30)]
    found = stopping(
        annotations=rated(generations, scores),
        generations=generations,
        compare=MODELS,
        params=AnalyzeParams(),
        receipt=receipt(tasks, chances, total=60),
    )
    weights = np.array([1 / since[-1] for _, since in chances])
    weights /= weights.mean()
    rounds = np.array([first for first, _ in chances])
    for first, second in [("a", "b"), ("a", "c"), ("b", "c")]:
        values = weights * (np.array(scores[first]) - np.array(scores[second]))
        expected = running(values, rounds=rounds, confidence=0.95, planned_tasks=60)[-1]
        assert found.pairs[f"{first}_vs_{second}"] == expected
        assert expected.estimate == pytest.approx(
            np.average(np.array(scores[first]) - np.array(scores[second]), weights=weights)
        ), "the mean over every task, each weighted by one over its chance"
    assert found.pairs["a_vs_b"].low > 0, "a is better than b on every task"
    assert not found.decided, "c is decided against neither: no stop"

    two = stopping(
        annotations=rated(generations, scores),
        generations=generations,
        compare=["a", "b"],
        params=AnalyzeParams(),
        receipt=receipt(tasks, chances, total=60),
    )
    assert two.decided


def test_only_analyzes_scores_count_and_too_few_tasks_decide_nothing() -> None:
    table = make_tasks(30)
    tasks = table.column("task_id").to_pylist()
    generations = make_generations(table, MODELS)
    scores = {"a": [7] * 30, "b": [1] * 30, "c": [4] * 30}
    chances = [(1, [0.5])] * 30
    drafts = rated(generations, scores, status="draft")
    left_out = stopping(
        annotations=pa.concat_tables([drafts, rated(generations, scores, annotator="excluded")]),
        generations=generations,
        compare=["a", "b"],
        params=AnalyzeParams(exclude_annotators=["excluded"]),
        receipt=receipt(tasks, chances, total=30),
    )
    assert left_out.pairs["a_vs_b"].estimate is None and not left_out.decided, "drafts and excluded: no scores"
    few = stopping(
        annotations=rated(make_generations(make_tasks(5), MODELS), scores),
        generations=make_generations(make_tasks(5), MODELS),
        compare=["a", "b"],
        params=AnalyzeParams(),
        receipt=receipt(tasks, chances, total=30),
    )
    assert few.pairs["a_vs_b"].estimate == 6 and few.pairs["a_vs_b"].low is None and not few.decided
