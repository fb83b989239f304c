"""Prediction-powered inference: the mean of a per-task quantity (a model's score, or a pair's per-task difference)
from a judge's scores on every task and the humans' scores on some of them.

The judge's mean over all tasks is precise but biased; the human residuals on the labelled tasks measure the bias.
The estimate lam * mean(judge, all tasks) + mean(human - lam * judge, labelled tasks) is unbiased for any fixed lam,
so the judge's bias costs width, never validity. Power tuning (PPI++, Angelopoulos, Duchi and Zrnic 2023) picks the
lam of least variance, the slope of human on judge: a judge that tells nothing gets lam near 0 and the humans' own
interval, a good one leaves about 1 - rho^2 (1 - n/N) of the humans' variance (rho: the judge's correlation with the
humans on the quantity, n of N tasks labelled). When humans rated tasks with known, unequal chances (active
selection), inverse-probability weights keep the estimate unbiased (active inference, Zrnic and Candès 2024).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from llm_feedback.stats import Interval


@dataclass(frozen=True)
class PPIEstimate:
    """`lam` weighs the judge's scores on every task: 0 is the humans alone, 1 the judge's mean corrected by the
    human residuals (at most N / (N - n)). `human`: the humans alone on the same labels. `effective_human_tasks`:
    how many labels the humans alone would need for the same variance (labels x human-only variance / PPI variance)."""

    estimate: float
    low: float
    high: float
    lam: float
    human: Interval
    effective_human_tasks: float


@dataclass(frozen=True)
class Correlations:
    """Pearson correlations of judge and human scores: over every answer (task, model), and per pair of models over
    the per-task differences, which is what decides PPI's gain on a difference (task effects cancel in a difference,
    so it is lower). None where either side is constant."""

    answers: float | None
    differences: dict[tuple[int, int], float | None]


def ppi_mean(
    *,
    human: np.ndarray,
    judge_labeled: np.ndarray,
    judge_all: np.ndarray,
    confidence: float,
    sampling_probability: np.ndarray | None = None,
) -> PPIEstimate:
    """`human` (n,): the human values on the labelled tasks; `judge_labeled` (n,): the judge's on the same tasks;
    `judge_all` (N,): the judge's on every task, the labelled ones included. `sampling_probability` (n,): the known
    chance each labelled task had of being chosen, each task on its own (None: a uniform random sample of n)."""
    y, f, f_all = (
        _vector(name, v) for name, v in [("human", human), ("judge_labeled", judge_labeled), ("judge_all", judge_all)]
    )
    n, total = y.size, f_all.size
    if f.size != n:
        raise ValueError(f"judge_labeled: {f.size} values for {n} human values")
    if n < 2:
        raise ValueError(f"human: at least 2 labelled tasks are needed, got {n}")
    if total < n:
        raise ValueError(f"judge_all: {total} tasks, fewer than the {n} labelled ones it must include")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence} is not between 0 and 1")
    if sampling_probability is None:
        fit = _uniform(y, f, f_all)
    else:
        p = _vector("sampling_probability", sampling_probability)
        if p.size != n:
            raise ValueError(f"sampling_probability: {p.size} values for {n} human values")
        if np.any((p <= 0) | (p > 1)):
            raise ValueError("sampling_probability: every probability must be in (0, 1]")
        fit = _weighted(y, f, f_all, 1 / p)
    estimate, variance, lam, human_estimate, human_variance = fit
    z = float(ndtri(1 - (1 - confidence) / 2))
    half, human_half = z * math.sqrt(variance), z * math.sqrt(human_variance)
    if variance > 0:
        effective = n * human_variance / variance
    else:
        effective = float(n) if human_variance == 0 else math.inf
    return PPIEstimate(
        estimate=estimate,
        low=estimate - half,
        high=estimate + half,
        lam=lam,
        human=Interval(human_estimate, human_estimate - human_half, human_estimate + human_half),
        effective_human_tasks=effective,
    )


def judge_human_correlations(*, human: np.ndarray, judge: np.ndarray) -> Correlations:
    """`human`, `judge`: (tasks, models) scores of the same answers; pairs are keyed (i, j), i < j, column indices."""
    h, j = np.asarray(human, dtype=float), np.asarray(judge, dtype=float)
    if h.shape != j.shape or h.ndim != 2:
        raise ValueError(f"judge: shape {j.shape} does not match human's {h.shape} (tasks, models)")
    pairs = itertools.combinations(range(h.shape[1]), 2)
    return Correlations(
        answers=_pearson(h.ravel(), j.ravel()),
        differences={(a, b): _pearson(h[:, a] - h[:, b], j[:, a] - j[:, b]) for a, b in pairs},
    )


def _uniform(y: np.ndarray, f: np.ndarray, f_all: np.ndarray) -> tuple[float, float, float, float, float]:
    """PPI++ for a uniform random sample of the tasks, computed as its authors' ppi_py does (population variances,
    the judge's variance over all tasks), so the two agree to rounding.

    Written over the N - n unlabelled tasks, whose judge mean and variance come from the sums over all tasks minus
    the labelled ones, the estimate is lam' * mean(judge, unlabelled) + mean(human - lam' * judge, labelled) with
    lam' = lam (N - n) / N: two independent means, so their variances add. PPI++ bounds lam' by 1."""
    n, total = y.size, f_all.size
    rest = total - n
    human_variance = float(y.var()) / n
    centre = float(f_all.mean())  # subtracted before the sums of squares, so they do not cancel
    rest_sum = float(np.sum(f_all - centre) - np.sum(f - centre))
    rest_squares = float(np.sum((f_all - centre) ** 2) - np.sum((f - centre) ** 2))
    spread = float(f_all.var(ddof=1))
    if rest == 0 or spread == 0:  # nothing unlabelled, or a judge that gives every task the same score
        return float(y.mean()), human_variance, 0.0, float(y.mean()), human_variance
    slope = float(np.mean((y - y.mean()) * (f - f.mean()))) / spread
    lam = _clip(slope, n, total)
    lam_rest = lam * rest / total
    rest_variance = max(rest_squares / rest - (rest_sum / rest) ** 2, 0.0)
    estimate = lam * float(f_all.mean()) + float(np.mean(y - lam * f))
    variance = lam_rest**2 * rest_variance / rest + float(np.var(y - lam_rest * f)) / n
    return estimate, variance, lam, float(y.mean()), human_variance


def _weighted(
    y: np.ndarray, f: np.ndarray, f_all: np.ndarray, w: np.ndarray
) -> tuple[float, float, float, float, float]:
    """Active inference with weights w = 1 / sampling probability: lam * mean(judge, all tasks) + the weighted mean
    of the human residuals y - lam * judge, sum(w r) / sum(w) over the labelled tasks.

    Zrnic and Candès divide the residuals' weighted sum by N, the weights' expectation; dividing by the weights
    themselves (Hájek) makes the estimate move with the scale and leaves the judge's bias out of the variance (a
    model's mean on 0-7 does not pay for its distance from 0, nor for a judge one point too lenient), at the price of
    a bias of order 1/n. At lam = 0 it is the humans' weighted mean with its robust (HC0) variance; with equal
    probabilities it is the PPI++ estimator. The variance is the sum of squares of each task's influence, lam * a_i +
    b_i, each task drawn for labels on its own (Poisson sampling); lam minimises it."""
    total, weights = f_all.size, float(w.sum())
    human_estimate = float(np.sum(w * y)) / weights
    judged = f - f_all.mean()  # about the judge's mean over all tasks, as it enters the estimate
    a = judged / total - w * (f - float(np.sum(w * f)) / weights) / weights
    b = w * (y - human_estimate) / weights
    rest = max(float(np.sum((f_all - f_all.mean()) ** 2) - np.sum(judged**2)), 0.0) / total**2  # unlabelled a_i^2
    aa, ab, bb = rest + float(np.sum(a**2)), float(np.sum(a * b)), float(np.sum(b**2))
    lam = _clip(-ab / aa, y.size, total) if aa > 0 and np.ptp(f_all) > 0 else 0.0
    estimate = lam * float(f_all.mean()) + float(np.sum(w * (y - lam * f))) / weights
    return estimate, lam**2 * aa + 2 * lam * ab + bb, lam, human_estimate, bb


def _clip(lam: float, labelled: int, total: int) -> float:
    """Power tuning keeps lam at 0 or above (a judge that runs against the humans is not used) and its weight on the
    unlabelled tasks, lam (N - n) / N, at most 1, as PPI++ does."""
    top = total / (total - labelled) if total > labelled else 1.0
    return min(max(lam, 0.0), top)


def _vector(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected one value per task, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(array)))} values are missing or not finite")
    return array


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
