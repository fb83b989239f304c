"""The stopping rule on analyze's scores without a server: each pair's confidence sequence over the rounds, each
task's difference weighted by one over its chance of having been published, and stop only when every pair is decided."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest

from llm_feedback.annotation.receipt import Receipt
from llm_feedback.artifacts import ANNOTATIONS, text_sha
from llm_feedback.params import AnalyzeParams
from llm_feedback.round_sequence import Labels, round_sequence
from llm_feedback.stats import Interval
from llm_feedback.stopping import Stopping, human_scores, stopping_on
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


def stopping(*, annotations: pa.Table, generations: pa.Table, compare, params, receipt, judgments=None) -> Stopping:
    """What push asks when a round is done: analyze's scores from pull's rows, then the decision."""
    complete = human_scores(
        annotations=annotations, generations=generations, compare=compare, params=params, scale=range(0, 8)
    )
    return stopping_on(complete, compare=compare, confidence=params.confidence, receipt=receipt, judgments=judgments)


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


def sequence_of(scores, tasks, chances, *, first, second, total, last, judge=None, judge_all=None):
    """round_sequence's interval at the last look, built here from the test's own lists."""
    rounds = np.array([r for r, _ in chances])
    matrix = np.ones((len(tasks), last))
    for row, (r, since) in enumerate(chances):
        matrix[row, r - 1 : last] = since[: last - r + 1]
    keep = rounds <= last
    human = (np.array(scores[first]) - np.array(scores[second]))[keep]
    labels = Labels(human=human, judge=judge, first_round=rounds[keep], chances=matrix[keep])
    return round_sequence(labels, judge_mean=judge_all, tasks=total, confidence=0.95, planned_tasks=total)[-1]


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
    for first, second in [("a", "b"), ("a", "c"), ("b", "c")]:
        expected = sequence_of(scores, tasks, chances, first=first, second=second, total=60, last=2)
        assert found.pairs[f"{first}_vs_{second}"] == expected
        assert expected.estimate == pytest.approx(
            np.average(np.array(scores[first]) - np.array(scores[second]), weights=weights)
        ), "the mean over every task, each weighted by one over its chance"
    assert found.looked_at == 2 and not found.judge_assisted
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


def test_a_round_scored_in_part_is_not_looked_at() -> None:
    """Round 3's tasks are only partly scored: the look stays at round 2, on round 1 and 2's tasks alone."""
    table = make_tasks(40)
    tasks = table.column("task_id").to_pylist()
    generations = make_generations(table, MODELS)
    rng = np.random.default_rng(8)
    a = rng.integers(3, 8, 40)
    scores = {"a": a.tolist(), "b": (a - rng.integers(0, 3, 40)).tolist(), "c": a.tolist()}
    chances = [(1, [0.25, 0.5, 0.75]) if i < 12 else (2, [0.5, 0.75]) if i < 24 else (3, [0.75]) for i in range(40)]
    annotations = rated(generations, scores)
    scored_in_part = pa.compute.is_in(annotations.column("task_id"), pa.array(tasks[30:]))
    found = stopping(
        annotations=annotations.filter(pa.compute.invert(scored_in_part)),
        generations=generations,
        compare=["a", "b"],
        params=AnalyzeParams(),
        receipt=receipt(tasks, chances, total=48),
    )
    assert found.looked_at == 2
    expected = sequence_of(scores, tasks, chances, first="a", second="b", total=48, last=2)
    assert found.pairs["a_vs_b"] == expected and expected.low is not None


def judged(generations: pa.Table, scores: dict[str, list[float]], tasks: list[str]) -> pa.Table:
    rows = [
        {"task_id": task, "model": model, "judge": "j", "score": scores[model][i], "error": None}
        for i, task in enumerate(tasks)
        for model in scores
    ]
    return pa.Table.from_pylist(rows)


def test_the_judge_joins_when_it_scored_the_tasks_and_its_mean_over_all_of_them_counts() -> None:
    """The judge scored 60 tasks, the humans the 30 published: the interval is round_sequence's with the judge's
    per-task differences on the published tasks and their mean over all 60, and narrower than the humans' alone
    when the judge tracks them."""
    table = make_tasks(60)
    tasks = table.column("task_id").to_pylist()
    generations = make_generations(table, MODELS)
    rng = np.random.default_rng(5)
    a = rng.integers(2, 8, 60)
    b = np.clip(a - rng.integers(-1, 3, 60), 0, 7)
    scores = {"a": a.tolist(), "b": b.tolist(), "c": a.tolist()}
    judge = {"a": (a + 1.0 + rng.normal(0, 0.3, 60)).tolist(), "b": (b + rng.normal(0, 0.3, 60)).tolist()}
    judge["c"] = judge["a"]
    chances = [(1, [0.25, 0.5]) if i < 15 else (2, [0.5]) for i in range(30)]
    humans = {model: values[:30] for model, values in scores.items()}
    settings = {
        "generations": make_generations(make_tasks(30), MODELS),
        "compare": ["a", "b"],
        "params": AnalyzeParams(),
        "receipt": receipt(tasks[:30], chances, total=60),
    }
    annotations = rated(settings["generations"], humans)
    alone = stopping(annotations=annotations, **settings)
    helped = stopping(annotations=annotations, judgments=judged(generations, judge, tasks), **settings)
    difference = np.array(judge["a"]) - np.array(judge["b"])
    expected = sequence_of(
        humans, tasks[:30], chances, first="a", second="b", total=60, last=2,
        judge=difference[:30], judge_all=float(difference.mean()),
    )  # fmt: skip
    assert helped.judge_assisted and not alone.judge_assisted
    assert helped.pairs["a_vs_b"] == expected
    assert (
        helped.pairs["a_vs_b"].high - helped.pairs["a_vs_b"].low
        < alone.pairs["a_vs_b"].high - alone.pairs["a_vs_b"].low
    )
    nothing_in_common = judged(generations, judge, [f"other-{i}" for i in range(60)])
    assert stopping(annotations=annotations, judgments=nothing_in_common, **settings) == alone


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
        receipt=receipt(tasks[:5], chances[:5], total=30),
    )
    assert few.looked_at == 1 and few.pairs["a_vs_b"] == Interval(None, None, None) and not few.decided
    in_part = stopping(
        annotations=rated(make_generations(make_tasks(5), MODELS), scores),
        generations=make_generations(make_tasks(5), MODELS),
        compare=["a", "b"],
        params=AnalyzeParams(),
        receipt=receipt(tasks, chances, total=30),
    )
    assert in_part.looked_at == 0 and not in_part.decided, "round 1 is scored on 5 of its 30 tasks: no look yet"
