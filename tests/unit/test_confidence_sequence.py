"""The confidence sequence behind "decided" after every annotation round: its boundary against a numeric integration
of the mixture martingale, and on simulated studies with a known truth its false decisions over 20 looks, its
coverage at every look at once, its power, and what looking at a fixed-n interval after every round would do instead.

A study: two models' scores clip(round(mean + task effect + noise), 0, 7) on the same tasks (task sd 1, noise sd
1.03 per answer, so the per-task differences have sd 1.5), rated in 20 rounds of 25 tasks, a look after each. The
truth is the exact expectation of the observed difference (`simulated_study.expected_scores`), not the inputs. Each
acceptance band is the target widened by the binomial sampling error of the replicates, so a procedure on target
fails with probability below 0.1%; the seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize_scalar
from scipy.stats import binom, norm
from scipy.stats import t as student

from llm_feedback.confidence_sequence import (
    MIN_TASKS,
    ConfidenceSequence,
    confidence_sequence,
    decided,
    mixture_rho,
    radius,
    running,
)
from llm_feedback.paired import tasks_for_power
from llm_feedback.stats import Interval
from llm_feedback.testing.simulated_study import Annotator, Population, expected_scores

CONFIDENCE = 0.95
ROUNDS, ROUND_TASKS = 20, 25
TASKS = ROUNDS * ROUND_TASKS
ROUND_OF_TASK = np.repeat(np.arange(ROUNDS), ROUND_TASKS)
TASK_SD, NOISE = 1.0, 1.03
NO_DIFFERENCE, HALF_A_POINT = (3.5, 3.5), (3.75, 3.25)
SURE = 0.001


def differences(means: tuple[float, float], *, replicates: int, seed: int) -> np.ndarray:
    """(replicates, TASKS) per-task score differences of the first model minus the second."""
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


def sequences(draws: np.ndarray, *, planned_tasks: float = TASKS) -> list[list[Interval]]:
    return [running(row, rounds=ROUND_OF_TASK, confidence=CONFIDENCE, planned_tasks=planned_tasks) for row in draws]


def at_most(rate: float, replicates: int) -> float:
    """The largest share of `replicates` runs consistent with a true rate of at most `rate`."""
    return binom.isf(SURE, replicates, rate) / replicates


def at_least(rate: float, replicates: int) -> float:
    return binom.ppf(SURE, replicates, rate) / replicates


def edges(intervals: list[Interval]) -> np.ndarray:
    return np.array([(i.low, i.high) for i in intervals])


# the boundary


@pytest.mark.parametrize(("tasks", "planned", "confidence"), [(20, 500, 0.95), (137, 100, 0.95), (2000, 300, 0.99)])
def test_the_radius_is_where_the_mixture_martingale_reaches_one_over_alpha(tasks, planned, confidence) -> None:
    """For standardised values the mixture over lambda ~ N(0, rho^2) of exp(lambda S - lambda^2 n / 2) is a
    nonnegative martingale of mean 1, so by Ville's inequality it passes 1/alpha at some n with chance at most alpha;
    the sequence's edge is where it equals 1/alpha."""
    sd = 1.7
    rho = mixture_rho(planned_tasks=planned, confidence=confidence)
    edge = tasks * float(radius(tasks=tasks, sd=sd, confidence=confidence, planned_tasks=planned)) / sd
    mixture, _ = quad(lambda lam: math.exp(lam * edge - lam**2 * tasks / 2) * norm.pdf(lam, scale=rho), -10, 10)
    assert mixture == pytest.approx(1 / (1 - confidence), rel=1e-6)


def test_the_sequence_is_narrowest_at_the_planned_tasks() -> None:
    """The tuning is Howard et al.'s closed-form approximation of the best rho: within 0.01% of the narrowest."""
    best = minimize_scalar(
        lambda log_planned: float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=math.exp(log_planned))),
        bounds=(0, 12),
        method="bounded",
    )
    assert math.exp(best.x) == pytest.approx(300, rel=0.05)
    assert float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=300)) / best.fun < 1.0001
    off = [float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=p)) for p in (75, 1200)]
    assert max(off) / best.fun < 1.08, "misjudging the tasks by a factor of 4 costs little width"


# the sequence itself


def test_rounds_update_the_running_sums_and_the_interval_only_shrinks() -> None:
    rng = np.random.default_rng(3)
    rounds = [rng.normal(0.3, 1.5, size) for size in (12, 40, 0, 25, 60)]
    sequence = ConfidenceSequence(confidence=CONFIDENCE, planned_tasks=100)
    looks = [sequence.update(r) for r in rounds]
    seen = np.concatenate(rounds)
    assert sequence.tasks == seen.size and sequence.looks == 4, "an empty round is no look"
    assert sequence.mean == pytest.approx(seen.mean()) and sequence.sd == pytest.approx(seen.std(ddof=1))
    for before, after in itertools.pairwise(looks):
        assert before.low <= after.low <= after.high <= before.high
    alone = confidence_sequence(seen, confidence=CONFIDENCE, planned_tasks=100)
    half = float(radius(tasks=seen.size, sd=seen.std(ddof=1), confidence=CONFIDENCE, planned_tasks=100))
    assert (alone.low, alone.high) == pytest.approx((seen.mean() - half, seen.mean() + half))
    assert looks[-1].low >= alone.low and looks[-1].high <= alone.high


def test_running_looks_after_each_round_whatever_the_order_of_tasks() -> None:
    rng = np.random.default_rng(4)
    values = np.rint(rng.normal(0.5, 1.5, 90))
    rounds = np.repeat([7, 2, 5], 30)  # round labels out of order: looks follow the labels, not the rows
    shuffled = rng.permutation(90)
    looked = edges(running(values, rounds=rounds, confidence=CONFIDENCE, planned_tasks=90))
    again = running(values[shuffled], rounds=rounds[shuffled], confidence=CONFIDENCE, planned_tasks=90)
    assert edges(again) == pytest.approx(looked)
    sequence = ConfidenceSequence(confidence=CONFIDENCE, planned_tasks=90)
    assert edges([sequence.update(values[rounds == r]) for r in (2, 5, 7)]) == pytest.approx(looked)
    assert len(np.unique(looked, axis=0)) == 3
    assert running(np.array([]), rounds=np.array([]), confidence=CONFIDENCE, planned_tasks=90) == []


def test_too_few_tasks_give_no_interval_and_no_decision() -> None:
    sequence = ConfidenceSequence(confidence=CONFIDENCE, planned_tasks=100)
    assert sequence.interval == Interval(None, None, None)
    few = sequence.update(np.full(MIN_TASKS - 1, 3.0))
    assert few == Interval(3.0, None, None) and not decided(few)
    enough = sequence.update(np.array([3.0]))
    assert enough == Interval(3.0, 3.0, 3.0) and decided(enough), "ten tasks all 3 points apart"


def test_a_new_interval_beyond_the_old_one_leaves_the_old_edge() -> None:
    sequence = ConfidenceSequence(confidence=CONFIDENCE, planned_tasks=100)
    first = sequence.update(np.tile([-1.0, 1.0], 10))
    jumped = sequence.update(np.full(5000, 6.0))
    assert jumped.low == jumped.high == first.high and jumped.estimate > first.high


def test_decided_means_the_interval_excludes_zero() -> None:
    assert decided(Interval(0.4, 0.1, 0.7)) and decided(Interval(-0.4, -0.7, -0.1))
    assert not decided(Interval(0.4, 0.0, 0.7)) and not decided(Interval(0.1, -0.2, 0.4))
    assert not decided(Interval(0.4, None, None))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ConfidenceSequence(confidence=1.0, planned_tasks=100), "confidence: 1.0"),
        (lambda: ConfidenceSequence(confidence=0.95, planned_tasks=0), "planned_tasks: 0"),
        (lambda: confidence_sequence(np.array([1.0, np.nan]), confidence=0.95, planned_tasks=9), "values: 1 not"),
        (lambda: confidence_sequence(np.ones((3, 2)), confidence=0.95, planned_tasks=9), "values: shape"),
        (lambda: running(np.ones(4), rounds=np.ones(3), confidence=0.95, planned_tasks=9), "rounds: 3 entries"),
    ],
)
def test_bad_input_names_the_parameter(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# on simulated studies


def test_with_no_true_difference_a_look_after_each_of_20_rounds_rarely_decides() -> None:
    runs = sequences(differences(NO_DIFFERENCE, replicates=2000, seed=1))
    false = np.mean([any(decided(i) for i in looks) for looks in runs])
    assert false <= at_most(1 - CONFIDENCE, len(runs))


def test_the_sequence_covers_the_true_difference_at_every_look_at_once() -> None:
    truth = true_difference(HALF_A_POINT)
    assert truth == pytest.approx(0.5, abs=0.01)
    runs = sequences(differences(HALF_A_POINT, replicates=1000, seed=2))
    covered = np.mean([all(i.low <= truth <= i.high for i in looks) for looks in runs])
    assert covered >= at_least(CONFIDENCE, len(runs))


def test_half_a_point_at_sd_1_5_is_decided_within_a_few_rounds() -> None:
    """The price of looking whenever one likes: 80% of studies decide within 2.5 times the tasks a single fixed-n
    test needs for 80% power, a test that would have had to fix its size in advance."""
    draws = differences(HALF_A_POINT, replicates=1000, seed=3)
    assert draws.std() == pytest.approx(1.5, abs=0.02)
    rounds_to_decide = np.array(
        [next((k + 1 for k, i in enumerate(looks) if decided(i)), ROUNDS + 1) for looks in sequences(draws)]
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
    replicates = 1000
    false = 0
    for values in np.clip(np.rint(rng.normal(0, 1.5, (replicates, 200))), -7, 7):
        sequence = ConfidenceSequence(confidence=CONFIDENCE, planned_tasks=200)
        false += any(decided(sequence.update(values[k : k + 1])) for k in range(values.size))
    assert false / replicates <= at_most(1 - CONFIDENCE, replicates)
