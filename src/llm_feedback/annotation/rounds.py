"""Annotation in rounds: which tasks a round publishes, drawn by Poisson sampling, so that each task's chance of
being in the round is known exactly and analyze can weight every human label by it and stay unbiased.

Each task not yet published enters the round on its own, with probability pi: a uniform number seeded by
annotation.seed, the round and the task decides, so a rerun draws the same round and a new task changes no other
task's draw. `random` gives every task the same pi; `active` gives more to tasks whose comparison the judge is least
sure of, mixed with an even share so that no pi is tiny (a tiny pi would give one label a huge weight)."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

# active: the share of each round spread evenly over the tasks left, whatever the judge says
UNIFORM_SHARE = 0.2
TIE = "tie"


@dataclass(frozen=True)
class Draw:
    """One round as drawn: how many tasks could enter it, how many were expected to, and the ones that did."""

    number: int
    eligible: int
    expected: float  # the sum of every eligible task's probability
    drawn: dict[str, float]  # task_id -> its inclusion probability

    @property
    def empty(self) -> bool:
        return not self.drawn


def inclusion_probabilities(weights: Mapping[str, float], *, expected: int) -> dict[str, float]:
    """pi proportional to each task's weight (> 0), at most 1, summing to `expected` (or to every task, when fewer
    are left): what a task capped at 1 cannot take goes to the others in proportion."""
    if expected >= len(weights):
        return dict.fromkeys(weights, 1.0)
    ranked = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    rest = math.fsum(weights.values())
    capped = 0
    while capped < len(ranked) and ranked[capped][1] * (expected - capped) / rest >= 1:
        rest -= ranked[capped][1]
        capped += 1
    scale = (expected - capped) / rest
    return {task: 1.0 if i < capped else weight * scale for i, (task, weight) in enumerate(ranked)}


def draw_round(probabilities: Mapping[str, float], *, seed: int, number: int) -> Draw:
    """Poisson sampling: each task is in the round when its own seeded uniform number falls below its pi."""
    drawn = {task: p for task, p in sorted(probabilities.items()) if _uniform(seed, number, task) < p}
    return Draw(number, len(probabilities), math.fsum(probabilities.values()), drawn)


def active_weights(uncertainty: Mapping[str, float]) -> dict[str, float]:
    """(1 - UNIFORM_SHARE) in proportion to the judge's uncertainty, UNIFORM_SHARE evenly: every weight is > 0."""
    total = math.fsum(uncertainty.values())
    even = 1 / len(uncertainty) if uncertainty else 0.0
    if total == 0:
        return dict.fromkeys(uncertainty, even)
    return {task: (1 - UNIFORM_SHARE) * u / total + UNIFORM_SHARE * even for task, u in uncertainty.items()}


def judge_uncertainty(
    task_ids: Sequence[str],
    *,
    models: Sequence[str],
    judgments: pa.Table | None,
    judge_pairwise: pa.Table | None = None,
) -> dict[str, float]:
    """How unsure the judge is of each task's comparison, 0 (sure) to 1, averaged over the compared pairs. A pair is
    unsure when the judge's scores of its two answers are close (1 / (1 + |difference|)), or when its pairwise
    verdicts, asked in both orders, disagree (1; both a tie: 0.5; both the same model: 0); the larger counts. A pair
    the judge said nothing about is as unsure as can be."""
    scores = _mean_scores(judgments)
    orders = _orders(judge_pairwise)
    pairs = list(itertools.combinations(models, 2))
    result = {}
    for task in task_ids:
        parts = [_pair_uncertainty(task, a, b, scores, orders) for a, b in pairs]
        result[task] = math.fsum(parts) / len(parts) if parts else 1.0
    return result


def _pair_uncertainty(task: str, a: str, b: str, scores: dict, orders: dict) -> float:
    found = []
    if (task, a) in scores and (task, b) in scores:
        found.append(1 / (1 + abs(scores[task, a] - scores[task, b])))
    both = orders.get((task, frozenset((a, b))))
    if both is not None:
        first, second = both
        found.append(1.0 if first != second else 0.5 if first == TIE else 0.0)
    return max(found, default=1.0)


def _mean_scores(judgments: pa.Table | None) -> dict[tuple[str, str], float]:
    """(task_id, model) -> the judge's score (the mean, should several judges have scored it)."""
    if judgments is None:
        return {}
    totals: dict[tuple[str, str], list[float]] = {}
    for task, model, score in zip(*(judgments.column(c).to_pylist() for c in ("task_id", "model", "score"))):
        if score is not None:
            totals.setdefault((task, model), []).append(float(score))
    return {key: math.fsum(values) / len(values) for key, values in totals.items()}


def _orders(judge_pairwise: pa.Table | None) -> dict[tuple[str, frozenset[str]], tuple[str, str]]:
    """(task_id, {model_a, model_b}) -> the preferred model (or tie) in each order, where both orders answered."""
    if judge_pairwise is None:
        return {}
    columns = ("task_id", "model_a", "model_b", "a_first", "b_first")
    return {
        (task, frozenset((a, b))): (first, second)
        for task, a, b, first, second in zip(*(judge_pairwise.column(c).to_pylist() for c in columns))
        if first is not None and second is not None
    }


def _uniform(seed: int, number: int, task_id: str) -> float:
    """A number in [0, 1) fixed by the seed, the round and the task."""
    digest = hashlib.sha256(f"{seed}:round:{number}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class RoundStatus:
    """Where the rounds stand after a push, for its summary line."""

    number: int  # the round now open (0: none drawn yet)
    records: int  # tasks in it
    done: int  # of these, with annotation.min_submitted submitted responses on their current record
    published: int  # tasks this push published as a new round (0: it waits for the current one)
    remaining: int  # tasks not published yet
    round_size: int
    decided: bool = False  # every compared pair decided on the human scores so far: no next round

    def line(self) -> str:
        if self.number == 0:
            return "no round drawn: every task is already published"
        if self.published:
            total = self.number + math.ceil(self.remaining / self.round_size)
            of = f"of {total}" if self.remaining == 0 else f"of about {total}"
            return f"round {self.number} {of}: {self.published} records published"
        state = f"round {self.number}: {self.done} of {self.records} records done"
        if self.decided:
            return f"{state}; decided: stop annotating"
        if self.remaining == 0:
            return f"{state}; every task is published"
        return f"{state}; next round when all are"
