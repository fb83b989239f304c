"""Paired comparison of models on the same tasks: the mean per-task difference with a BCa bootstrap interval, a
sign-flip permutation test, Holm's adjustment across pairs, boundary-safe (Wilson) intervals for win, tie and loss
rates, and the tasks needed to detect a given difference.

Pairing is what makes the verdict efficient: the task's own difficulty cancels out of each per-task difference, so
the interval on the difference is far narrower than two per-model intervals compared by eye.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import t as student_t

from llm_feedback.stats import Interval

EQUAL = 1e-9  # sums of scores are multiples of simple fractions: closer than this is equal


@dataclass(frozen=True)
class Test:
    statistic: float
    p_value: float


def bca_mean_intervals(
    values: np.ndarray, totals: np.ndarray, samples: np.ndarray, *, confidence: float
) -> list[Interval]:
    """Column means of a (tasks, K) matrix with bias-corrected and accelerated (BCa) bootstrap intervals over tasks,
    from the column sums over all tasks (`totals`, K) and over each resample of tasks (`samples`, resamples x K), as
    `stats.bootstrap_sums` gives them.

    BCa corrects the percentile interval for the skew and bias of the bootstrap distribution (Efron 1987), which
    matters at a few dozen tasks on a bounded 0-7 scale; the acceleration comes from the jackknife, which for a mean
    has a closed form (no n leave-one-out recomputations). Like every bootstrap of a mean it is a little narrow at
    small n (it uses the plug-in variance and normal quantiles), so its levels are expanded as Hesterberg's
    expanded percentile interval does: the normal quantile becomes sqrt(n / (n - 1)) times Student's t with n - 1
    degrees of freedom (at 30 tasks 6% wider, at 1000 tasks 0.1%)."""
    n, k = values.shape
    if n < 2:
        return [Interval(float(values[0, c]) if n else None, None, None) for c in range(k)]
    jackknife = (totals[None, :] - values) / (n - 1)
    tail = math.sqrt(n / (n - 1)) * float(student_t.ppf((1 - confidence) / 2, n - 1))
    return [_bca(float(totals[c] / n), samples[:, c] / n, jackknife[:, c], tail) for c in range(k)]


def _bca(estimate: float, sample_means: np.ndarray, jackknife: np.ndarray, tail: float) -> Interval:
    """`tail`: the lower quantile the interval's levels are built on (negative)."""
    if np.ptp(sample_means) <= EQUAL:  # every task gave the same value: the bootstrap has nothing to say
        return Interval(estimate, estimate, estimate)
    resamples = sample_means.size
    below = np.mean(sample_means < estimate - EQUAL) + 0.5 * np.mean(np.abs(sample_means - estimate) <= EQUAL)
    z0 = ndtri(np.clip(below, 0.5 / resamples, 1 - 0.5 / resamples))
    spread = jackknife.mean() - jackknife
    squares = np.sum(spread**2)
    acceleration = np.sum(spread**3) / (6 * squares**1.5) if squares > 0 else 0.0
    levels = []
    for z in (tail, -tail):
        adjusted = z0 + (z0 + z) / (1 - acceleration * (z0 + z))
        levels.append(100 * float(ndtr(adjusted)))
    low, high = np.percentile(sample_means, levels)
    return Interval(estimate, float(low), float(high))


def sign_flip_tests(differences: np.ndarray, *, resamples: int, seed: int) -> list[Test]:
    """Two-sided paired permutation tests of "no difference" for each column of (tasks, pairs) differences.

    Under the null each task's difference is as likely positive as negative, so the test statistic (the sum) is
    redrawn with random signs. Tasks with the same absolute difference are interchangeable, so a redraw only needs
    how many of each distinct value turn positive: a binomial per distinct value instead of a sign per task, which
    keeps 50k tasks as cheap as 50. p = (1 + redraws at least as extreme) / (1 + redraws), valid at any n."""
    rng = np.random.default_rng(seed)
    tests = []
    for column in differences.T:
        observed = float(column.sum())
        magnitudes, counts = np.unique(np.abs(column[np.abs(column) > EQUAL]), return_counts=True)
        if magnitudes.size == 0:
            tests.append(Test(observed, 1.0))
            continue
        positive = rng.binomial(counts[None, :], 0.5, size=(resamples, magnitudes.size))
        redrawn = (2 * positive - counts[None, :]) @ magnitudes
        extreme = int(np.sum(np.abs(redrawn) >= abs(observed) - EQUAL))
        tests.append(Test(observed, (1 + extreme) / (1 + resamples)))
    return tests


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: rejecting where an adjusted p is below alpha keeps the chance of any false
    decision among the pairs at most alpha, whatever their dependence."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def wilson(successes: int, trials: int, confidence: float) -> Interval:
    """A rate with Wilson's score interval, which stays inside (0, 1) and keeps its coverage at 0 and n successes,
    where a bootstrap interval collapses to a point."""
    if trials == 0:
        return Interval(None, None, None)
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(successes / trials, float(ci.low), float(ci.high))


def tasks_for_power(sd: float, *, difference: float, confidence: float, power: float = 0.8) -> int | None:
    """Tasks a paired comparison needs to detect `difference` with this power, from the per-task sd of the
    differences (normal approximation of the two-sided test)."""
    if not math.isfinite(sd) or sd <= 0:
        return None
    z = ndtri(1 - (1 - confidence) / 2) + ndtri(power)
    return math.ceil((z * sd / difference) ** 2)
