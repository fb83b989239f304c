"""Annotation in rounds without a server: the draw's inclusion probabilities are what each task's chance of being
drawn really is, active selection follows the judge's uncertainty, and the receipt keeps the rounds."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import statsmodels.api as sm

from llm_feedback.annotation.receipt import read_receipt
from llm_feedback.annotation.rounds import (
    SHRINK_LABELS,
    UNIFORM_SHARE,
    RoundStatus,
    active_weights,
    draw_look,
    inclusion_probabilities,
    judge_uncertainty,
    learnt_weights,
    next_round,
    uniform,
)
from llm_feedback.artifacts import JUDGE_PAIRWISE, JUDGMENTS
from llm_feedback.errors import InputError
from llm_feedback.judge_assisted import squared_residuals
from tests.unit.test_annotation_units import RECEIPT

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
def test_the_tasks_published_by_each_round_are_drawn_as_often_as_their_recorded_chance_says(select: str) -> None:
    """Four rounds of 10 from 40 tasks, over many seeds: by every round, each task is published as often as the
    chance the receipt records for it by then, also when the judge's scores change before round 3."""
    tasks = [f"t{i:02d}" for i in range(40)]
    if select == "random":
        weights = [dict.fromkeys(tasks, 1.0)] * 4
    else:  # the judge's score gap grows along the tasks (the first are the least sure); then the judge runs again
        gaps = [{t: i % 8 for i, t in enumerate(tasks)}, {t: (i * 3) % 8 for i, t in enumerate(tasks)}]
        weights = [
            active_weights(
                judge_uncertainty(
                    tasks,
                    models=["a", "b"],
                    judgments=judgments({(t, "a"): 0 for t in tasks} | {(t, "b"): g[t] for t in tasks}),
                )
            )
            for g in (gaps[0], gaps[0], gaps[1], gaps[1])
        ]
    published = {(task, by): 0 for task in tasks for by in (1, 2, 3, 4)}
    recorded: dict[tuple[str, int], set[float]] = {}
    sizes = dict.fromkeys((1, 2, 3, 4), 0)
    for seed in range(SEEDS):
        chances: dict = {}
        for number in (1, 2, 3, 4):
            look, chances = next_round(chances, weights=weights[number - 1], number=number, round_size=10, seed=seed)
            assert look.expected == pytest.approx(10 * number)
            sizes[number] += len(look.drawn)
        for task, (first, since) in chances.items():
            for by in range(first, 5):
                published[task, by] += 1
                recorded.setdefault((task, by), set()).add(since[by - first])
    for (task, by), times in published.items():
        (chance,) = recorded[task, by]  # the same chance, whichever tasks the seed drew
        spread = math.sqrt(chance * (1 - chance) / SEEDS)
        assert abs(times / SEEDS - chance) < 4.5 * spread + 1e-9, (task, by, times / SEEDS, chance)
    assert sum(sizes.values()) == 40 * SEEDS, "by round ceil(40 / 10) every task is in"
    assert abs(sizes[1] / SEEDS - 10) < 0.15 and abs(sizes[2] / SEEDS - 10) < 0.2, "round_size records on average"
    if select == "active":
        (unsure,), (sure,) = recorded["t00", 1], recorded["t07", 1]  # score gaps 0 and 7
        assert unsure > 4 * sure, "the task the judge is least sure of is likelier"
        by_round = [inclusion_probabilities(w, expected=10 * n) for n, w in enumerate(weights[:3], 1)]
        assert [t for t in tasks if by_round[2][t] < by_round[1][t]], "the judge's second run lowers some chances"
        assert all(recorded[t, 3] == {max(q[t] for q in by_round)} for t in tasks), "by a round: the largest so far"


def test_a_draw_is_fixed_by_seed_and_a_new_task_changes_no_other_draw() -> None:
    weights = dict.fromkeys([f"t{i}" for i in range(50)], 1.0)
    first = draw_look(weights, published=(), number=1, round_size=15, seed=7)
    assert draw_look(weights, published=(), number=1, round_size=15, seed=7) == first
    assert draw_look(weights, published=(), number=1, round_size=15, seed=8).drawn != first.drawn
    second = draw_look(weights, published=first.drawn, number=2, round_size=15, seed=7)
    assert not set(second.drawn) & set(first.drawn) and all(q == pytest.approx(0.6) for q in second.drawn.values())
    assert all(uniform(7, t) < 0.6 for t in [*first.drawn, *second.drawn]), "published by round 2: below its chance"
    wider = draw_look({**weights, "new": 1.0}, published=(), number=1, round_size=15, seed=7)
    assert set(wider.drawn) - {"new"} <= set(first.drawn), "a new task only lowers the others' chances"
    assert (first.expected, wider.expected) == (pytest.approx(15), pytest.approx(15))


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


def test_later_rounds_weight_each_level_of_uncertainty_by_the_root_mean_squared_residual_seen_there() -> None:
    """80 labelled tasks at four levels of the judge's uncertainty; the humans stray from the judge by 2 points at the
    most unsure level and by 0.5 elsewhere: that level's tasks weigh more (1.7 times: 4 times the sd, shrunk towards the
    overall mean with 20 labels a level, then mixed with the even share), every level's mean counts each label by one
    over its chance, and unlabelled tasks take their level's."""
    tasks = [f"t{i:03d}" for i in range(200)]
    uncertainty = {t: (i % 4) / 3 for i, t in enumerate(tasks)}  # four levels: 0, 1/3, 2/3, 1
    labelled = tasks[:80]
    residuals = {t: 4.0 if uncertainty[t] == 1 else 0.25 for t in labelled}
    chances = {t: 0.4 for t in labelled}
    weights = learnt_weights(uncertainty, residuals=residuals, chances=chances)
    overall = (20 * 4 + 60 * 0.25) / 80
    shrunk = {high: math.sqrt((20 * own + SHRINK_LABELS * overall) / (20 + SHRINK_LABELS)) for high, own in (
        (True, 4.0), (False, 0.25))}  # fmt: skip
    total = 50 * shrunk[True] + 150 * shrunk[False]
    expected = {t: (1 - UNIFORM_SHARE) * shrunk[uncertainty[t] == 1] / total + UNIFORM_SHARE / 200 for t in tasks}
    assert weights == pytest.approx(expected)
    assert 1.5 < weights["t003"] / weights["t000"] < 4 and weights["t103"] == weights["t003"]

    by_chance = dict(chances, **{t: 0.1 for t in labelled[:40] if uncertainty[t] == 1})  # a quarter: ten labels
    heavier = dict(residuals, **{t: 9.0 for t in labelled[:40] if uncertainty[t] == 1})
    reweighted = learnt_weights(uncertainty, residuals=heavier, chances=by_chance)
    w = {t: 1 / by_chance[t] for t in labelled}
    overall = sum(w[t] * heavier[t] for t in labelled) / sum(w.values())
    level = (10 * 9.0 / 0.1 + 10 * 4.0 / 0.4) / (10 / 0.1 + 10 / 0.4)  # each label weighted by 1 / chance: 8
    ratio = math.sqrt((20 * level + SHRINK_LABELS * overall) / (20 * 0.25 + SHRINK_LABELS * overall))
    even = UNIFORM_SHARE / 200
    assert (reweighted["t003"] - even) / (reweighted["t000"] - even) == pytest.approx(ratio)


def test_a_judge_whose_uncertainty_tells_nothing_of_its_errors_gets_nearly_even_rounds() -> None:
    tasks = [f"t{i:03d}" for i in range(300)]
    rng = random.Random(4)
    uncertainty = {t: rng.random() for t in tasks}
    residuals = {t: rng.expovariate(1.0) for t in tasks[:100]}
    weights = learnt_weights(uncertainty, residuals=residuals, chances=dict.fromkeys(tasks[:100], 0.5))
    assert max(weights.values()) / min(weights.values()) < 1.3
    assert active_weights(uncertainty) != pytest.approx(weights), "round 1's bet on the uncertainty is dropped"
    few = learnt_weights(uncertainty, residuals=dict(list(residuals.items())[:19]), chances=dict.fromkeys(tasks, 1))
    assert few == active_weights(uncertainty), "fewer labels than one level needs: the judge's uncertainty alone"


def test_the_squared_residuals_are_those_of_the_humans_differences_on_the_judge_s() -> None:
    rng = np.random.default_rng(2)
    tasks = [f"t{i}" for i in range(50)]
    judge = pd.DataFrame(rng.normal(4, 1.5, (50, 3)), index=tasks, columns=["a", "b", "c"])
    humans = pd.DataFrame(0.8 * judge.to_numpy() + rng.normal(0, 0.7, (50, 3)), index=tasks, columns=judge.columns)
    found = squared_residuals(humans.iloc[:40], judge, ["a", "b", "c"])
    assert set(found) == set(tasks[:40])
    expected = np.zeros(40)
    for x, y in [("a", "b"), ("a", "c"), ("b", "c")]:
        fit = sm.OLS((humans[x] - humans[y])[:40], sm.add_constant((judge[x] - judge[y])[:40])).fit()
        expected += fit.resid.to_numpy() ** 2 / 3
    assert [found[t] for t in tasks[:40]] == pytest.approx(expected)
    against = squared_residuals(-humans, judge, ["a", "b"])
    centred = (humans["b"] - humans["a"]) - (humans["b"] - humans["a"]).mean()
    assert [against[t] for t in tasks] == pytest.approx(centred.to_numpy() ** 2), "a judge against them: slope 0"


def test_the_round_line_says_what_was_published_or_what_it_waits_for() -> None:
    assert RoundStatus(2, 40, 0, 40, 120, 5).line() == "round 2 of at most 5: 40 records published"
    assert RoundStatus(4, 38, 0, 38, 0, 5).line() == "round 4 of 4: 38 records published"
    assert RoundStatus(1, 40, 23, 0, 160, 5).line() == "round 1: 23 of 40 records done; next round when all are"
    assert RoundStatus(5, 38, 38, 0, 0, 5).line() == "round 5: 38 of 38 records done; every task is published"
    assert RoundStatus(3, 40, 40, 0, 80, 5, decided=True).line() == (
        "round 3: 40 of 40 records done; decided: stop annotating"
    )
    assert RoundStatus(0, 0, 0, 0, 0, 0).line() == "no round drawn: every task is already published"


ROUNDS = [
    {"round": 1, "tasks": 8, "expected": 2.0, "drawn": 1, "seed": 42},
    {"round": 2, "tasks": 8, "expected": 4.0, "drawn": 1, "seed": 42},
]


def test_a_receipt_keeps_rounds_and_one_from_before_rounds_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    path.write_text(json.dumps(RECEIPT))
    old = read_receipt(path)
    assert (old.rounds, old.current_round, old.sampling(), old.chances()) == ([], 0, {}, {})
    old.write(path)
    assert json.loads(path.read_text()) == RECEIPT, "without rounds, written as before"

    data = json.loads(json.dumps(RECEIPT))
    data["blinding"]["r1"].update(round=1, probabilities=[0.25, 0.5])
    data["blinding"]["r3"] = {"task_id": "t1", "models": ["a", "b"], "round": 1, "probabilities": [0.25, 0.5]}
    data["blinding"]["r2"].update(round=2, probabilities=[0.5])
    data["rounds"] = ROUNDS
    path.write_text(json.dumps(data))
    receipt = read_receipt(path)
    assert receipt.current_round == 2 and receipt.chances() == {"t1": (1, [0.25, 0.5]), "t2": (2, [0.5])}
    assert receipt.sampling() == {"t1": (1, 0.5), "t2": (2, 0.5)}
    assert receipt.sampling(by_round=1) == {"t1": (1, 0.25)} and receipt.sampling(by_round=0) == {}
    with pytest.raises(ValueError, match="by_round: 3, but the rounds drawn are 1 to 2"):
        receipt.sampling(by_round=3)
    receipt.write(tmp_path / "again.json")
    assert read_receipt(tmp_path / "again.json") == receipt


def in_rounds(round_: int, probabilities: list) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["rounds"] = ROUNDS
        data["blinding"]["r1"].update(round=round_, probabilities=probabilities)

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["blinding"]["r1"].update(round=1), "blinding: record r1: a round needs its probabilities"),
        (in_rounds(1, [0.0, 0.5]), "blinding.r1.probabilities[0]: Input should be greater than 0"),
        (in_rounds(2, [1.5]), "blinding.r1.probabilities[0]: Input should be less than or equal to 1"),
        (in_rounds(0, [0.5]), "blinding.r1.round: Input should be greater than or equal to 1"),
        (in_rounds(1, [0.5]), "blinding: record r1: 1 probabilities for rounds 1 to 2"),
        (in_rounds(3, [0.5]), "blinding: record r1: 1 probabilities for rounds 3 to 2"),
        (in_rounds(1, [0.5, 0.25]), "blinding: record r1: a chance of being published by a round fell"),
        (
            lambda r: r.update(rounds=[{"round": 2, "tasks": 3, "expected": 1.0, "drawn": 1, "seed": 42}]),
            "rounds: rounds are not numbered 1, 2, ... in order",
        ),
        (lambda r: r.update(rounds=[{"round": 1, "tasks": 3, "expected": 1.0}]), "rounds[0].drawn: Field required"),
    ],
)
def test_a_receipt_with_broken_rounds_names_the_key(tmp_path: Path, edit, expected: str) -> None:
    data = json.loads(json.dumps(RECEIPT))
    edit(data)
    (tmp_path / "push.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as error:
        read_receipt(tmp_path / "push.json")
    assert f"not a push receipt: {expected}" in str(error.value)
