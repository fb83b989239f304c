"""Annotation in rounds without a server: the draw's inclusion probabilities are what each task's chance of being
drawn really is, active selection follows the judge's uncertainty, and the receipt keeps the rounds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.annotation.rounds import (
    UNIFORM_SHARE,
    RoundStatus,
    active_weights,
    draw_round,
    inclusion_probabilities,
    judge_uncertainty,
)
from llm_feedback.artifacts import JUDGE_PAIRWISE, JUDGMENTS
from llm_feedback.errors import InputError

SEEDS = 4000


def judgments(scores: dict[tuple[str, str], int | None]) -> pa.Table:
    rows = [
        {
            "task_id": t,
            "model": m,
            "judge": "j",
            "score": s,
            "rationale": None,
            "error": None,
            "answer": "",
            "request_hash": f"{t}{m}",
        }
        for (t, m), s in scores.items()
    ]
    return pa.Table.from_pylist(rows, schema=JUDGMENTS.schema)


def pairwise(orders: dict[str, tuple[str | None, str | None]]) -> pa.Table:
    rows = [
        {
            "task_id": t,
            "model_a": "a",
            "model_b": "b",
            "judge": "j",
            "a_first": x,
            "b_first": y,
            "verdict": None,
            "error": None,
        }
        for t, (x, y) in orders.items()
    ]
    return pa.Table.from_pylist(rows, schema=JUDGE_PAIRWISE.schema)


@pytest.mark.parametrize("select", ["random", "active"])
def test_each_task_is_drawn_as_often_as_its_recorded_probability_says(select: str) -> None:
    tasks = [f"t{i:02d}" for i in range(40)]
    if select == "random":
        weights = dict.fromkeys(tasks, 1.0)
    else:  # the judge's score gap grows along the tasks: the first ones are the most uncertain
        scores = {(t, "a"): 3 for t in tasks} | {(t, "b"): 3 + i % 8 for i, t in enumerate(tasks)}
        weights = active_weights(judge_uncertainty(tasks, models=["a", "b"], judgments=judgments(scores)))
    probabilities = inclusion_probabilities(weights, expected=10)
    assert math.isclose(sum(probabilities.values()), 10)
    counts = dict.fromkeys(tasks, 0)
    sizes = []
    for seed in range(SEEDS):
        drawn = draw_round(probabilities, seed=seed, number=3).drawn
        assert all(drawn[t] == probabilities[t] for t in drawn), "each drawn task carries its probability"
        sizes.append(len(drawn))
        for task in drawn:
            counts[task] += 1
    for task, p in probabilities.items():
        spread = math.sqrt(p * (1 - p) / SEEDS)
        assert abs(counts[task] / SEEDS - p) < 4.5 * spread + 1e-9, (task, counts[task] / SEEDS, p)
    assert abs(sum(sizes) / SEEDS - 10) < 0.15, "a round holds round_size records on average"
    assert len(set(map(tuple, (sorted(draw_round(probabilities, seed=s, number=1).drawn) for s in range(20))))) > 1


def test_a_draw_is_fixed_by_seed_and_round_and_a_new_task_changes_no_other_draw() -> None:
    probabilities = dict.fromkeys([f"t{i}" for i in range(50)], 0.3)
    first = draw_round(probabilities, seed=7, number=2)
    assert draw_round(probabilities, seed=7, number=2) == first
    assert draw_round(probabilities, seed=7, number=3).drawn != first.drawn
    assert draw_round(probabilities, seed=8, number=2).drawn != first.drawn
    wider = draw_round({**probabilities, "new": 0.3}, seed=7, number=2)
    assert {t: p for t, p in wider.drawn.items() if t != "new"} == first.drawn
    assert (first.eligible, first.expected, wider.eligible) == (50, pytest.approx(15), 51)


def test_probabilities_follow_the_weights_capped_at_one_and_sum_to_the_round_size() -> None:
    assert inclusion_probabilities({"a": 1, "b": 1, "c": 2}, expected=2) == {"c": 1.0, "a": 0.5, "b": 0.5}
    found = inclusion_probabilities({"a": 1, "b": 2, "c": 3, "d": 4}, expected=2)
    assert found == pytest.approx({"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8})
    heavy = inclusion_probabilities({"a": 100, "b": 50, **{f"x{i}": 1 for i in range(8)}}, expected=4)
    assert heavy["a"] == heavy["b"] == 1.0 and heavy["x0"] == pytest.approx(0.25)
    assert math.isclose(sum(heavy.values()), 4)
    assert inclusion_probabilities({"a": 1, "b": 5}, expected=5) == {"a": 1.0, "b": 1.0}, "the last round takes all"


def test_the_judge_is_unsure_where_its_scores_are_close_or_its_two_orders_disagree() -> None:
    scores = {("close", "a"): 4, ("close", "b"): 4, ("far", "a"): 7, ("far", "b"): 0, ("flip", "a"): 7}
    scores |= {("flip", "b"): 0, ("tie", "a"): 6, ("tie", "b"): 1, ("one", "a"): 5, ("one", "b"): None}
    orders = {"far": ("a", "a"), "flip": ("a", "b"), "tie": ("tie", "tie"), "one": (None, "b")}
    tasks = ["close", "far", "flip", "tie", "one", "unjudged"]
    found = judge_uncertainty(tasks, models=["a", "b"], judgments=judgments(scores), judge_pairwise=pairwise(orders))
    assert found == {"close": 1.0, "far": 1 / 8, "flip": 1.0, "tie": 0.5, "one": 1.0, "unjudged": 1.0}
    three = judge_uncertainty(["far"], models=["a", "b", "c"], judgments=judgments(scores))
    assert three == {"far": pytest.approx((1 / 8 + 1 + 1) / 3)}, "averaged over the pairs; c was not judged"
    weights = active_weights({"sure": 0.0, "unsure": 1.0, "half": 0.5})
    assert weights == pytest.approx(
        {
            "sure": UNIFORM_SHARE / 3,
            "unsure": (1 - UNIFORM_SHARE) / 1.5 + UNIFORM_SHARE / 3,
            "half": (1 - UNIFORM_SHARE) / 3 + UNIFORM_SHARE / 3,
        }
    )
    assert active_weights({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}, "a judge sure of everything: even"


def test_the_round_line_says_what_was_published_or_what_it_waits_for() -> None:
    assert RoundStatus(2, 40, 0, 40, 120, 40).line() == "round 2 of about 5: 40 records published"
    assert RoundStatus(5, 38, 0, 38, 0, 40).line() == "round 5 of 5: 38 records published"
    assert RoundStatus(1, 40, 23, 0, 160, 40).line() == "round 1: 23 of 40 records done; next round when all are"
    assert RoundStatus(5, 38, 38, 0, 0, 40).line() == "round 5: 38 of 38 records done; every task is published"
    assert RoundStatus(3, 40, 40, 0, 80, 40, decided=True).line() == (
        "round 3: 40 of 40 records done; decided: stop annotating"
    )
    assert RoundStatus(0, 0, 0, 0, 0, 40).line() == "no round drawn: every task is already published"


RECEIPT = {
    "url": "http://x",
    "workspace": "w",
    "dataset": "d",
    "dataset_id": "id",
    "models": ["a", "b"],
    "records": 2,
    "settings_hash": "s",
    "content_hash": "c",
    "version": 1,
    "blinding": {"r1": {"task_id": "t1", "models": ["b", "a"]}, "r2": {"task_id": "t2", "models": ["a", "b"]}},
}


def test_a_receipt_keeps_rounds_and_one_from_before_rounds_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    path.write_text(json.dumps(RECEIPT))
    old = read_receipt(path)
    assert (old.rounds, old.current_round, old.sampling()) == ([], 0, {})
    old.write(path)
    assert json.loads(path.read_text()) == RECEIPT, "without rounds, written as before"

    data = json.loads(json.dumps(RECEIPT))
    data["blinding"]["r1"].update(round=1, probability=0.25)
    data["blinding"]["r3"] = {"task_id": "t1", "models": ["a", "b"], "round": 1, "probability": 0.25}
    data["rounds"] = [
        {"round": 1, "eligible": 8, "expected": 2.0, "drawn": 1},
        {"round": 2, "eligible": 7, "expected": 2.0, "drawn": 0},
    ]
    path.write_text(json.dumps(data))
    receipt = read_receipt(path)
    assert receipt.current_round == 2 and receipt.sampling() == {"t1": (1, 0.25)}
    receipt.write(tmp_path / "again.json")
    assert read_receipt(tmp_path / "again.json") == receipt


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["blinding"]["r1"].update(round=1), "blinding: record r1: a round needs its probability"),
        (
            lambda r: r["blinding"]["r1"].update(round=1, probability=0),
            "blinding.r1.probability: Input should be greater than 0",
        ),
        (
            lambda r: r["blinding"]["r1"].update(round=1, probability=1.5),
            "blinding.r1.probability: Input should be less than or equal to 1",
        ),
        (
            lambda r: r["blinding"]["r1"].update(round=0, probability=0.5),
            "blinding.r1.round: Input should be greater than or equal to 1",
        ),
        (
            lambda r: r.update(rounds=[{"round": 2, "eligible": 3, "expected": 1.0, "drawn": 1}]),
            "rounds: rounds are not numbered 1, 2, ... in order",
        ),
        (lambda r: r.update(rounds=[{"round": 1, "eligible": 3, "expected": 1.0}]), "rounds[0].drawn: Field required"),
    ],
)
def test_a_receipt_with_broken_rounds_names_the_key(tmp_path: Path, edit, expected: str) -> None:
    data = json.loads(json.dumps(RECEIPT))
    edit(data)
    (tmp_path / "push.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as error:
        read_receipt(tmp_path / "push.json")
    assert f"not a push receipt: {expected}" in str(error.value)
