"""Anytime-valid intervals for a pair's difference over annotation rounds, from the humans' labels alone or with the
judge's scores on every task (prediction-powered), for random and active rounds alike.

Rounds are nested Poisson samples of the N tasks (annotation/rounds.py): by round r each task has been published
with a known chance q_i(r) that never falls. At each look the estimate is

    lam * mean(judge, N tasks) + sum_labelled w_i (human_i - lam * judge_i) / sum_labelled w_i,   w_i = 1 / q_i(r),

lam = 0 for the humans alone. Its error against the mean over all tasks the N stand for is D + H_r: D = the N
tasks' own mean minus that truth (fixed once the tasks are drawn, variance s_y^2 / N), H_r = the Poisson sample's
error (variance sum_i r_i^2 (1 - q_i) / q_i / N^2, r the residuals). Because each task's chance only grows and one
seeded number decides every round's draw, Cov(H_r, H_s) = Var(H_s) for r <= s: the error process has the
covariance of B(t) / t, a Brownian motion at the "time" t_r = 1 / Var(D + H_r). Robbins' Gaussian-mixture boundary
holds for B(t) / t at every t at once, so it holds at these looks: the sequence of confidence_sequence.py at
n_eff = s_y^2 / V_r tasks of sd s_y (the humans' own per-task sd: n_eff is how many human labels alone would give
the same variance) covers the truth at every look at once. With the humans alone and random rounds, n_eff is the
number of labels and this is confidence_sequence.py's sequence; with a judge, the labels count for more where the
judge tracks the humans; with active rounds, the weights are exact at every round.

Why not a separate sequence on PPI terms plus a bound on the judge's mean: the union of the two pays a 99% margin
on the judge's mean on top, which at N = 1,000 tasks costs what the judge saves. Here D's variance enters the same
Gaussian once. lam is the power-tuned value at each look (the slope of the humans on the judge, weighted as the
variance weighs each task, at least 0), so a judge that tells nothing gets lam near 0 and the humans' own width.
Validity is asymptotic, as for every asymptotic confidence sequence; bench/labels.py and the tests measure the false
decisions over 20 looks.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llm_feedback.confidence_sequence import MIN_TASKS, check_settings, radius
from llm_feedback.stats import Interval


@dataclass(frozen=True)
class Labels:
    """The labelled tasks of one pair: `human` (n,) their per-task values (a difference of two models' scores),
    `judge` (n,) the judge's on the same tasks or None, `first_round` (n,) the round that published each,
    `chances` (n, rounds) each one's chance of having been published by each round (any value before its own)."""

    human: np.ndarray
    judge: np.ndarray | None
    first_round: np.ndarray
    chances: np.ndarray


@dataclass(frozen=True)
class Look:
    """One look: the estimate, its variance, and the humans' own per-task variance (their spread divided by the
    estimate's variance is how many human labels alone would be as certain)."""

    estimate: float
    variance: float
    spread: float


def by_round(
    chances: Mapping[str, tuple[int, Sequence[float]]], *, tasks: Sequence[str], last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels' `first_round` and `chances` for `tasks` from the receipt's chances (task -> its round, its chance by
    that round and each round since), up to round `last`."""
    first_round = np.array([chances[task][0] for task in tasks], dtype=np.int64)
    matrix = np.ones((len(tasks), max(last, 1)))
    for row, task in enumerate(tasks):
        first, since = chances[task]
        matrix[row, first - 1 : last] = since[: last - first + 1]
    return first_round, matrix


def last_scored_round(
    chances: Mapping[str, tuple[int, Sequence[float]]], *, scored: Collection[str], rounds: int
) -> int:
    """The last round up to which every published task has scores (0: none): a later round scored in part is no
    random draw (who rated what first is not), so looks stop before it."""
    unscored = [first for task, (first, _) in chances.items() if task not in scored]
    return min(min(unscored) - 1, rounds) if unscored else rounds


def look(*, human: np.ndarray, judge: np.ndarray | None, chances: np.ndarray, judge_mean: float, tasks: int) -> Look:
    """The estimate after one round from its labelled tasks, each published with chance `chances`, out of `tasks`
    tasks whose judge values average `judge_mean` (ignored without a judge)."""
    y = np.asarray(human, dtype=np.float64)
    q = np.asarray(chances, dtype=np.float64)
    w = 1 / q
    total = float(w.sum())
    y_centred = y - float(w @ y) / total
    spread = float(w @ y_centred**2) / total  # the humans' per-task variance, each task weighted as drawn
    cost = (1 - q) / q**2  # each labelled task's share of the Poisson sample's variance
    estimate, lam, judged = float(w @ y) / total, 0.0, np.zeros_like(y)
    if judge is not None:
        f = np.asarray(judge, dtype=np.float64)
        judge_labelled = float(w @ f) / total
        judged = f - judge_labelled
        fit = float(cost @ judged**2)
        lam = max(float(cost @ (y_centred * judged)) / fit, 0.0) if fit > 0 else 0.0
        estimate += lam * (judge_mean - judge_labelled)
    errors = y_centred - lam * judged
    return Look(estimate, spread / tasks + float(cost @ errors**2) / tasks**2, spread)


def round_sequence(
    labels: Labels, *, judge_mean: float | None, tasks: int, confidence: float, planned_tasks: float
) -> list[Interval]:
    """The interval at a look after each round from 1 to the last any label's chances reach, each the intersection
    of all so far (the sequence covers at every look at once, so it covers in their intersection). A look with fewer
    than MIN_TASKS labels gives no interval. `tasks`: N, the tasks the rounds draw from (and the judge scored)."""
    check_settings(confidence=confidence, planned_tasks=planned_tasks)
    _check(labels, tasks=tasks, judge_mean=judge_mean)
    rounds = labels.chances.shape[1] if labels.chances.ndim == 2 else 0
    low, high, out = -math.inf, math.inf, []
    for number in range(1, rounds + 1):
        mask = labels.first_round <= number
        if int(mask.sum()) < MIN_TASKS:
            out.append(Interval(None, None, None))
            continue
        found = look(
            human=labels.human[mask],
            judge=None if labels.judge is None else labels.judge[mask],
            chances=labels.chances[mask, number - 1],
            judge_mean=0.0 if judge_mean is None else judge_mean,
            tasks=tasks,
        )
        if found.variance > 0:  # the sequence at the human labels that would be as certain, of the humans' sd
            effective = found.spread / found.variance
            sd = math.sqrt(found.spread)
            half = float(radius(tasks=effective, sd=sd, confidence=confidence, planned_tasks=planned_tasks))
        else:  # every task labelled and every label the same: the mean is known
            half = 0.0
        low, high = _narrowed(low, high, found.estimate - half, found.estimate + half)
        out.append(Interval(found.estimate, low, high))
    return out


def _narrowed(low: float, high: float, new_low: float, new_high: float) -> tuple[float, float]:
    """The intersection of the interval so far with a new one; should they not meet (possible only where the
    sequence has already missed), the old edge on the new one's side."""
    low, high = max(low, new_low), min(high, new_high)
    if low > high:
        return (high, high) if new_low > high else (low, low)
    return low, high


def _check(labels: Labels, *, tasks: int, judge_mean: float | None) -> None:
    n = labels.human.shape[0]
    if labels.first_round.shape != (n,) or labels.chances.shape[0] != n:
        raise ValueError(
            f"labels: {n} human values but first_round {labels.first_round.shape}, chances {labels.chances.shape}"
        )
    if labels.judge is not None and (labels.judge.shape != (n,) or judge_mean is None):
        raise ValueError("labels.judge: one value per labelled task, and judge_mean, are needed together")
    if tasks < n:
        raise ValueError(f"tasks: {tasks}, fewer than the {n} labelled")
    own_and_later = np.arange(labels.chances.shape[1])[None, :] >= labels.first_round[:, None] - 1
    used = labels.chances[own_and_later]
    if np.any(~np.isfinite(used) | (used <= 0) | (used > 1)):
        raise ValueError("labels.chances: every chance from a task's own round on must be in (0, 1]")
