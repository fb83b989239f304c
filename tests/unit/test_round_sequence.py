"""The anytime-valid sequence behind "decided" after every annotation round (round_sequence.py).

With the humans alone in even rounds it is the Gaussian-mixture sequence on the running mean, checked against the
boundary computed independently. On simulated studies with a known truth: its false decisions over 20 looks, its
coverage at every look at once, its power, what a fixed-n interval looked at after every round would do instead;
then, in rounds drawn by rounds.py (random and active, nested Poisson) with a judge of known quality and a bias of
its own: the variance it reports at each look is the spread of its estimates, a later look's error covaries with an
earlier one's by the later one's variance (the property its validity rests on), no more than 5% false decisions over
20 looks, coverage at every look, far fewer human labels to decide with a good judge and no more with a useless one.

Each acceptance band is the target widened by the binomial sampling error of the replicates, so a procedure on target
fails with probability below 0.1%; the seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import cache

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import binom
from scipy.stats import t as student

from llm_feedback.annotation.rounds import active_weights, judge_uncertainty, next_round
from llm_feedback.confidence_sequence import MIN_TASKS, decided, radius
from llm_feedback.paired import tasks_for_power
from llm_feedback.round_sequence import Labels, by_round, look, round_sequence
from llm_feedback.stats import Interval
from llm_feedback.testing.simulated_study import (
    JUDGE_QUALITIES,
    JUDGED_PAIR,
    Annotator,
    Judge,
    Population,
    expected_scores,
    per_task_scores,
    simulate,
    with_difference,
)

CONFIDENCE = 0.95
ROUNDS, ROUND_TASKS = 20, 25
TASKS = ROUNDS * ROUND_TASKS
TASK_SD, NOISE = 1.0, 1.03
NO_DIFFERENCE, HALF_A_POINT = (3.5, 3.5), (3.75, 3.25)
SURE = 0.001


def at_most(rate: float, replicates: int) -> float:
    """The largest share of `replicates` runs consistent with a true rate of at most `rate`."""
    return binom.isf(SURE, replicates, rate) / replicates


def at_least(rate: float, replicates: int) -> float:
    return binom.ppf(SURE, replicates, rate) / replicates


def edges(intervals: list[Interval]) -> np.ndarray:
    return np.array([(i.low, i.high) for i in intervals])


# --- the humans alone in even rounds: the mixture sequence on the running mean ---------------------------------------


def even_rounds(values: np.ndarray, *, rounds: int = ROUNDS) -> Labels:
    """Round r publishes the next len/rounds tasks; by round r each task had the chance r / rounds."""
    size = values.size // rounds
    first = np.repeat(np.arange(1, rounds + 1), size)
    chances = np.tile(np.arange(1, rounds + 1) / rounds, (values.size, 1))
    return Labels(human=values, judge=None, first_round=first, chances=chances)


def sequence(values: np.ndarray, *, planned_tasks: float = TASKS) -> list[Interval]:
    labels = even_rounds(values)
    return round_sequence(
        labels, judge_mean=None, tasks=values.size, confidence=CONFIDENCE, planned_tasks=planned_tasks
    )


def differences(means: tuple[float, float], *, replicates: int, seed: int) -> np.ndarray:
    """(replicates, TASKS) per-task score differences of the first model minus the second (task sd 1, noise sd 1.03
    per answer: the differences have sd 1.5)."""
    rng = np.random.default_rng(seed)
    task = rng.normal(0, TASK_SD, (replicates, TASKS, 1))
    scores = np.clip(np.rint(np.array(means) + task + rng.normal(0, NOISE, (replicates, TASKS, 2))), 0, 7)
    return scores[..., 0] - scores[..., 1]


def true_difference(means: tuple[float, float]) -> float:
    population = Population(
        tasks=1, means={"a": means[0], "b": means[1]}, annotators={"h": Annotator(noise=NOISE)}, task_sd=TASK_SD
    )
    expected = expected_scores(population)[:, 0, 0]
    return float(expected[0] - expected[1])


def test_humans_alone_in_even_rounds_is_the_mixture_sequence_on_the_running_mean() -> None:
    values = np.rint(np.random.default_rng(3).normal(0.3, 1.5, TASKS))
    looks = sequence(values)
    low, high = -math.inf, math.inf
    for number, interval in enumerate(looks, start=1):
        seen = values[: number * ROUND_TASKS]
        half = float(radius(tasks=seen.size, sd=seen.std(), confidence=CONFIDENCE, planned_tasks=TASKS))
        low, high = max(low, seen.mean() - half), min(high, seen.mean() + half)
        assert interval.estimate == pytest.approx(seen.mean())
        assert (interval.low, interval.high) == pytest.approx((low, high)), number
    for before, after in itertools.pairwise(looks):
        assert before.low <= after.low <= after.high <= before.high, "each look intersects the ones before"


def test_the_order_of_tasks_within_and_across_rows_does_not_matter() -> None:
    rng = np.random.default_rng(4)
    labels = even_rounds(np.rint(rng.normal(0.5, 1.5, 90)), rounds=3)
    shuffled = rng.permutation(90)
    again = Labels(
        human=labels.human[shuffled], judge=None, first_round=labels.first_round[shuffled], chances=labels.chances
    )
    settings = {"judge_mean": None, "tasks": 90, "confidence": CONFIDENCE, "planned_tasks": 90}
    assert edges(round_sequence(again, **settings)) == pytest.approx(edges(round_sequence(labels, **settings)))


def test_too_few_tasks_give_no_interval_and_no_decision() -> None:
    values = np.full(2 * (MIN_TASKS - 1), 3.0)
    values[MIN_TASKS - 1 :] = [3.0] * (MIN_TASKS - 2) + [4.0]
    labels = Labels(
        human=values,
        judge=None,
        first_round=np.repeat([1, 2], MIN_TASKS - 1),
        chances=np.tile([0.5, 1.0], (values.size, 1)),
    )
    first, second = round_sequence(labels, judge_mean=None, tasks=values.size, confidence=CONFIDENCE, planned_tasks=18)
    assert first == Interval(None, None, None) and not decided(first), "9 tasks: no interval"
    assert second.low is not None and decided(second), "18 tasks nearly all 3 points apart"


def test_a_new_interval_beyond_the_old_one_leaves_the_old_edge() -> None:
    values = np.concatenate([np.tile([-1.0, 1.0], 10), np.full(5000, 6.0)])
    labels = Labels(
        human=values,
        judge=None,
        first_round=np.repeat([1, 2], [20, 5000]),
        chances=np.tile([20 / 5020, 1.0], (values.size, 1)),
    )
    first, jumped = round_sequence(labels, judge_mean=None, tasks=5020, confidence=CONFIDENCE, planned_tasks=100)
    assert jumped.low == jumped.high == first.high and jumped.estimate > first.high


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confidence": 1.0}, "confidence: 1.0"),
        ({"planned_tasks": 0}, "planned_tasks: 0"),
        ({"tasks": 5}, "tasks: 5, fewer than the 20 labelled"),
        ({"labels": "chances"}, "labels.chances: every chance"),
        ({"labels": "judge"}, "labels.judge: one value per labelled task"),
        ({"labels": "rounds"}, "labels: 20 human values but first_round"),
    ],
)
def test_bad_input_names_the_parameter(change: dict, message: str) -> None:
    labels = even_rounds(np.arange(20.0), rounds=2)
    broken = {
        "chances": dataclasses.replace(labels, chances=labels.chances * 0),
        "judge": dataclasses.replace(labels, judge=np.ones(20)),
        "rounds": dataclasses.replace(labels, first_round=np.ones(3, dtype=np.int64)),
    }
    settings = {"judge_mean": None, "tasks": 20, "confidence": CONFIDENCE, "planned_tasks": 20}
    settings.update({k: v for k, v in change.items() if k != "labels"})
    with pytest.raises(ValueError, match=message):
        round_sequence(broken.get(change.get("labels"), labels), **settings)


def test_with_no_true_difference_a_look_after_each_of_20_rounds_rarely_decides() -> None:
    runs = [sequence(row) for row in differences(NO_DIFFERENCE, replicates=2000, seed=1)]
    false = np.mean([any(decided(i) for i in looks) for looks in runs])
    assert false <= at_most(1 - CONFIDENCE, len(runs))


def test_the_sequence_covers_the_true_difference_at_every_look_at_once() -> None:
    truth = true_difference(HALF_A_POINT)
    assert truth == pytest.approx(0.5, abs=0.01)
    runs = [sequence(row) for row in differences(HALF_A_POINT, replicates=1000, seed=2)]
    covered = np.mean([all(i.low <= truth <= i.high for i in looks) for looks in runs])
    assert covered >= at_least(CONFIDENCE, len(runs))


def test_half_a_point_at_sd_1_5_is_decided_within_a_few_rounds() -> None:
    """The price of looking whenever one likes: 80% of studies decide within 2.5 times the tasks a single fixed-n
    test needs for 80% power, a test that would have had to fix its size in advance."""
    draws = differences(HALF_A_POINT, replicates=1000, seed=3)
    assert draws.std() == pytest.approx(1.5, abs=0.02)
    rounds_to_decide = np.array(
        [next((k + 1 for k, i in enumerate(sequence(row)) if decided(i)), ROUNDS + 1) for row in draws]
    )
    fixed = tasks_for_power(1.5, difference=0.5, confidence=CONFIDENCE)
    within = math.ceil(2.5 * fixed / ROUND_TASKS)
    assert np.mean(rounds_to_decide <= within) >= at_least(0.8, len(draws))
    assert np.mean(rounds_to_decide <= ROUNDS) >= at_least(0.99, len(draws))


def test_a_fixed_n_interval_looked_at_after_every_round_decides_falsely_far_too_often() -> None:
    """What the sequence is for: the t interval is right at one planned look and wrong at 20."""
    draws = differences(NO_DIFFERENCE, replicates=2000, seed=1)
    n = np.arange(1, ROUNDS + 1) * ROUND_TASKS
    sums, squares = np.cumsum(draws, axis=1)[:, n - 1], np.cumsum(draws**2, axis=1)[:, n - 1]
    mean = sums / n
    half = student.ppf((1 + CONFIDENCE) / 2, n - 1) * np.sqrt((squares - n * mean**2) / (n - 1) / n)
    false = np.abs(mean) > half
    assert at_least(1 - CONFIDENCE, len(draws)) <= np.mean(false[:, -1]) <= at_most(1 - CONFIDENCE, len(draws))
    assert np.mean(false.any(axis=1)) >= 3 * (1 - CONFIDENCE)


@pytest.mark.slow
def test_a_look_after_every_task_from_the_tenth_on_rarely_decides_falsely() -> None:
    """Rounds need not be large: the guarantee holds looking after each task, once MIN_TASKS are in."""
    rng = np.random.default_rng(5)
    replicates, tasks = 1000, 200
    false = 0
    for values in np.clip(np.rint(rng.normal(0, 1.5, (replicates, tasks))), -7, 7):
        looks = round_sequence(
            even_rounds(values, rounds=tasks), judge_mean=None, tasks=tasks, confidence=CONFIDENCE, planned_tasks=200
        )
        false += any(decided(i) for i in looks)
    assert false / replicates <= at_most(1 - CONFIDENCE, replicates)


# --- rounds drawn by rounds.py, with a judge ------------------------------------------------------------------------

GAP = with_difference(JUDGED_PAIR, difference=0.3)
NULL = dataclasses.replace(JUDGED_PAIR, means={"a": 3.85, "b": 3.85})
USELESS = Judge(bias={"a": 0.6}, task_weight=0.0, answer_weight=0.0)


@dataclasses.dataclass(frozen=True)
class Study:
    human: np.ndarray  # (tasks,) per-task human differences a - b
    judge: np.ndarray  # (tasks,) the judge's
    labels: Labels  # every task, in the order the rounds drew them, with their chances
    truth: float


@cache
def studies(population: str, quality: str, select: str, count: int) -> tuple[Study, ...]:
    """`count` studies of TASKS tasks, each annotated in ROUNDS rounds of ROUND_TASKS drawn by rounds.py's
    next_round with every task's weight even (random) or from the judge's uncertainty (active)."""
    base = {"gap": GAP, "null": NULL}[population]
    judge = USELESS if quality == "useless" else JUDGE_QUALITIES[quality]
    simulated = simulate(dataclasses.replace(base, tasks=TASKS * count, judge=judge), seed=len(quality) + count)
    human, judged = per_task_scores(simulated)
    human, judged = human.reshape(count, TASKS, 2), judged.reshape(count, TASKS, 2)
    ids = [f"task-{i:04d}" for i in range(TASKS)]
    out = []
    for replicate in range(count):
        weights = dict.fromkeys(ids, 1.0)
        if select == "active":
            table = {"task_id": np.repeat(ids, 2), "model": ["a", "b"] * TASKS, "score": judged[replicate].ravel()}
            weights = active_weights(judge_uncertainty(ids, models=["a", "b"], judgments=pa.table(table)))
        chances: dict = {}
        for number in range(1, ROUNDS + 1):
            _, chances = next_round(chances, weights=weights, number=number, round_size=ROUND_TASKS, seed=replicate)
        tasks = sorted(chances)
        first, matrix = by_round(chances, tasks=tasks, last=ROUNDS)
        order = np.array([int(task[5:]) for task in tasks])
        dh = human[replicate, :, 0] - human[replicate, :, 1]
        dj = judged[replicate, :, 0] - judged[replicate, :, 1]
        labels = Labels(human=dh[order], judge=dj[order], first_round=first, chances=matrix)
        out.append(Study(dh, dj, labels, simulated.difference["a_vs_b"]))
    return tuple(out)


def run(study: Study, *, judge: bool) -> list[Interval]:
    labels = study.labels if judge else dataclasses.replace(study.labels, judge=None)
    return round_sequence(
        labels,
        judge_mean=float(study.judge.mean()) if judge else None,
        tasks=TASKS,
        confidence=CONFIDENCE,
        planned_tasks=TASKS,
    )


def labels_to_decide(study: Study, *, judge: bool) -> int:
    """Human labels published by the first round at which the pair is decided (every task when never)."""
    for number, interval in enumerate(run(study, judge=judge), start=1):
        if decided(interval):
            return int(np.sum(study.labels.first_round <= number))
    return TASKS


@pytest.mark.slow
@pytest.mark.parametrize("select", ["random", "active"])
def test_the_reported_variance_is_the_spread_of_the_estimates_and_later_looks_share_it(select: str) -> None:
    """The validity argument in numbers: at looks 3 and 12 the variance look() reports is the variance of its
    estimates over 400 studies, and the two looks' errors covary by the later look's variance, as B(t) / t's do."""
    errors, variances = [], []
    for study in studies("gap", "0.8", select, 400):
        row, reported = [], []
        for number in (3, 12):
            mask = study.labels.first_round <= number
            found = look(
                human=study.labels.human[mask],
                judge=study.labels.judge[mask],
                chances=study.labels.chances[mask, number - 1],
                judge_mean=float(study.judge.mean()),
                tasks=TASKS,
            )
            row.append(found.estimate - study.truth)
            reported.append(found.variance)
        errors.append(row)
        variances.append(reported)
    errors, variances = np.array(errors), np.array(variances)
    observed = np.cov(errors.T)
    assert observed[0, 0] == pytest.approx(variances[:, 0].mean(), rel=0.2)
    assert observed[1, 1] == pytest.approx(variances[:, 1].mean(), rel=0.2)
    assert observed[0, 1] == pytest.approx(observed[1, 1], rel=0.25), observed
    assert observed[0, 1] < 0.6 * observed[0, 0], "the later look is more certain"


@pytest.mark.slow
@pytest.mark.parametrize(("select", "quality"), [("random", "0.8"), ("active", "0.8"), ("random", "useless")])
def test_with_no_true_difference_20_looks_rarely_decide_with_the_judge_or_without(select: str, quality: str) -> None:
    runs = studies("null", quality, select, 400)
    assert runs[0].truth == 0
    for judge in (True, False):
        false = np.mean([any(decided(i) for i in run(study, judge=judge)) for study in runs])
        assert false <= at_most(1 - CONFIDENCE, len(runs)), (judge, false)


@pytest.mark.slow
@pytest.mark.parametrize("select", ["random", "active"])
def test_the_judge_assisted_sequence_covers_the_true_difference_at_every_look(select: str) -> None:
    runs = studies("gap", "0.8", select, 400)
    covered = np.mean([all(i.low <= s.truth <= i.high for i in run(s, judge=True) if i.low is not None) for s in runs])
    assert covered >= at_least(CONFIDENCE, len(runs))


@pytest.mark.slow
def test_a_judge_that_tracks_the_humans_decides_with_far_fewer_labels_and_a_useless_one_costs_none() -> None:
    """The 0.8 judge (its per-task differences correlate 0.8 with the humans') saves about a third of the labels to
    decide a gap of 0.3 among 500 tasks (half among 1,000 in bench/labels.py: the judge's mean over more tasks is
    worth more); a judge that sees nothing leaves the humans' own count."""
    good = studies("gap", "0.8", "random", 200)
    humans = np.mean([labels_to_decide(s, judge=False) for s in good])
    assisted = np.mean([labels_to_decide(s, judge=True) for s in good])
    assert assisted <= 0.75 * humans, (assisted, humans)
    useless = studies("gap", "useless", "random", 200)
    alone = np.mean([labels_to_decide(s, judge=False) for s in useless])
    with_useless = np.mean([labels_to_decide(s, judge=True) for s in useless])
    assert with_useless <= 1.05 * alone, (with_useless, alone)
