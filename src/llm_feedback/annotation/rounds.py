"""Annotation in rounds: which tasks each round publishes, drawn so that every task's chance of being published by
each round is known exactly, and analyze can weight every human label by it and stay unbiased.

The rounds are nested Poisson samples. Each task holds one uniform number, seeded by annotation.seed and the task; at
round r every task gets a chance q(r), proportional to its weight, at most 1, summing to r x round_size over the
tasks; the tasks whose number falls below their chance are published by then (those not yet published make round r).
So the tasks published by round r are an independent draw with known chances, whichever rounds came before, and the
same for every round: the chance that a task is published by round r is the largest q it had up to r. A rerun draws
the same round, a new task changes no other task's draw, and by round ceil(tasks / round_size) every task is in.

`random` gives every task the same weight. `active` bets on the judge: round 1 gives more weight to tasks whose
comparison the judge is least sure of; every later round learns from the labels so far how far the humans' per-task
differences stray from the judge's on tasks of each level of the judge's uncertainty, and weights each task by the
root mean square of those residuals at its level (chances proportional to the residuals' sd minimise the estimate's
variance, Zrnic and Candès 2024), so a judge whose uncertainty says nothing about its errors soon gets even rounds.
Both are mixed with an even share so that no chance is tiny (a tiny chance would give one label a huge weight)."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# active: the share of each round spread evenly over the tasks, whatever the judge says
UNIFORM_SHARE = 0.2
# learnt weights: levels of the judge's uncertainty, at least this many labels each, at most MAX_LEVELS
LABELS_PER_LEVEL = 20
MAX_LEVELS = 4
# each level's mean squared residual is shrunk towards the overall one as if it held this many labels more
SHRINK_LABELS = 20
TIE = "tie"


@dataclass(frozen=True)
class Look:
    """One round as drawn: every task's chance of being published by it, and the tasks it publishes."""

    number: int
    chances: dict[str, float]  # task_id -> q: its chance of being published by this round (at this round's weights)
    drawn: dict[str, float]  # the tasks this round publishes -> their chance

    @property
    def expected(self) -> float:
        """How many tasks are expected to be published by this round: min(tasks, round x round_size)."""
        return math.fsum(self.chances.values())


def draw_look(
    weights: Mapping[str, float], *, published: Collection[str], number: int, round_size: int, seed: int
) -> Look:
    """Round `number`: the tasks of `weights` not in `published` whose seeded number is below their chance."""
    chances = inclusion_probabilities(weights, expected=number * round_size)
    drawn = {t: q for t, q in sorted(chances.items()) if t not in published and uniform(seed, t) < q}
    return Look(number, chances, drawn)


def inclusion_probabilities(weights: Mapping[str, float], *, expected: int) -> dict[str, float]:
    """Chances proportional to each task's weight (> 0), at most 1, summing to `expected` (every task is certain when
    there are no more tasks than that): what a task capped at 1 cannot take goes to the others in proportion."""
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


Chances = dict[str, tuple[int, list[float]]]  # task_id -> (its round, its chance by that round and each round since)


def next_round(
    chances: Mapping[str, tuple[int, list[float]]],
    *,
    weights: Mapping[str, float],
    number: int,
    round_size: int,
    seed: int,
) -> tuple[Look, Chances]:
    """Draw round `number` from the tasks of `weights` (`chances`: those published in earlier rounds), and bring every
    published task's chances up to it: a task's chance of being published by a round is the largest it was given up
    to then (one no longer among the tasks keeps its last)."""
    look = draw_look(weights, published=chances.keys(), number=number, round_size=round_size, seed=seed)
    updated = {
        task: (first, [*since, max(since[-1], look.chances.get(task, since[-1]))])
        for task, (first, since) in chances.items()
    }
    updated.update({task: (number, [q]) for task, q in look.drawn.items()})
    return look, updated


def active_weights(uncertainty: Mapping[str, float]) -> dict[str, float]:
    """(1 - UNIFORM_SHARE) in proportion to the judge's uncertainty, UNIFORM_SHARE evenly: every weight is > 0."""
    return _mixed(uncertainty)


def _mixed(scores: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(scores.values())
    even = 1 / len(scores) if scores else 0.0
    if total == 0:
        return dict.fromkeys(scores, even)
    return {task: (1 - UNIFORM_SHARE) * u / total + UNIFORM_SHARE * even for task, u in scores.items()}


def learnt_weights(
    uncertainty: Mapping[str, float], *, residuals: Mapping[str, float], chances: Mapping[str, float]
) -> dict[str, float]:
    """Active weights from the rounds so far: `residuals` (task -> squared residual of the humans' per-task
    difference on the judge's, for the labelled tasks), `chances` (their chances of having been labelled). The tasks
    are cut into levels of the judge's uncertainty at the labelled tasks' quantiles; each level's mean squared
    residual (each label weighted by one over its chance, shrunk towards the overall mean) sets the weight of every
    task at that level to its root. Too few labels for one level: the judge's uncertainty alone (active_weights)."""
    labelled = sorted(task for task in residuals if task in uncertainty and task in chances)
    levels = min(MAX_LEVELS, len(labelled) // LABELS_PER_LEVEL)
    if levels < 1:
        return active_weights(uncertainty)
    u = np.array([uncertainty[t] for t in labelled])
    squares = np.array([residuals[t] for t in labelled])
    w = 1 / np.array([chances[t] for t in labelled])
    cuts = np.quantile(u, np.linspace(0, 1, levels + 1)[1:-1])
    level = np.searchsorted(cuts, u, side="right")
    overall = float(w @ squares) / float(w.sum())
    spread = np.empty(levels)
    for k in range(levels):
        inside = level == k
        mean = float(w[inside] @ squares[inside]) / float(w[inside].sum()) if inside.any() else overall
        count = int(inside.sum())
        spread[k] = math.sqrt((count * mean + SHRINK_LABELS * overall) / (count + SHRINK_LABELS))
    tasks = list(uncertainty)
    at = spread[np.searchsorted(cuts, np.array([uncertainty[t] for t in tasks]), side="right")]
    return _mixed(dict(zip(tasks, at.tolist(), strict=True)))


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


def uniform(seed: int, task_id: str) -> float:
    """A task's number in [0, 1), fixed by the seed and the task: it is published by the first round whose chance for
    it exceeds this."""
    digest = hashlib.sha256(f"{seed}:round:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class RoundStatus:
    """Where the rounds stand after a push, for its summary line."""

    number: int  # the last round drawn (0: none)
    records: int  # tasks it published
    done: int  # of these, with annotation.min_submitted submitted responses on their current record
    published: int  # tasks this push published as a new round (0: it waits for the current one, or stops)
    remaining: int  # tasks not published yet
    at_most: int  # rounds it takes at most to publish every task: ceil(tasks / round_size)
    decided: bool = False  # every compared pair decided on the human scores so far: no next round

    def line(self) -> str:
        if self.number == 0:
            return "no round drawn: every task is already published"
        if self.published:
            of = f"of {self.number}" if self.remaining == 0 else f"of at most {self.at_most}"
            return f"round {self.number} {of}: {self.published} records published"
        state = f"round {self.number}: {self.done} of {self.records} records done"
        if self.decided:
            return f"{state}; decided: stop annotating"
        if self.remaining == 0:
            return f"{state}; every task is published"
        return f"{state}; next round when all are"
