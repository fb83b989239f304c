"""The compared models on their complete cases (tasks where every one of them has a current score): means, paired
differences with tests, win/tie/loss rates, Bradley-Terry ratings, and all of it again at equal answer style.

Every statistic rests on the same tasks, so a mean difference is exactly the difference of the means, and the one
bootstrap over tasks (stats.bootstrap_sums) serves the means, the differences and the Bradley-Terry ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_feedback.paired import bca_mean_intervals, holm, sign_flip_tests, tasks_for_power, wilson
from llm_feedback.params import AnalyzeParams
from llm_feedback.stats import Interval, bootstrap_sums, bradley_terry_intervals, pair_outcomes
from llm_feedback.style import normalised_differences, scaled, style_controlled_difference, style_controlled_ratings
from llm_feedback.verdict import Comparison

OUTCOMES = ("win", "tie", "loss")


def _excludes_zero(interval: Interval) -> bool:
    """The interval and the test must agree before a pair is called decided, so the line never says "beats" beside
    an interval holding 0."""
    return interval.low is not None and (interval.low > 0 or interval.high < 0)


@dataclass(frozen=True)
class PairResult:
    comparison: Comparison
    sd: float | None  # of the per-task differences
    rates: dict[str, Interval]  # win, tie, loss (of all tasks) and decisive (wins / (wins + losses)), Wilson
    style_controlled: Interval


@dataclass(frozen=True)
class ModelComparison:
    models: list[str]
    tasks: int
    means: list[Interval]
    pairs: list[PairResult]
    bradley_terry: list[Interval] | None  # three or more models
    bradley_terry_style: list[Interval] | None


def compare_models(
    matrix: np.ndarray, models: list[str], *, params: AnalyzeParams, style: np.ndarray | None = None
) -> ModelComparison:
    """`matrix`: (tasks, models) scores of complete cases; `style`: (tasks, models, features) of the same answers."""
    n, m = matrix.shape
    pairs, outcomes = pair_outcomes(matrix, params.tie_margin)
    differences = np.stack([matrix[:, i] - matrix[:, j] for i, j in pairs], axis=1) if pairs else np.empty((n, 0))
    columns = np.hstack([matrix, differences, outcomes.reshape(n, len(pairs) * 3)])
    totals, samples = bootstrap_sums(columns, params.bootstrap, params.seed)
    means = bca_mean_intervals(matrix, totals[:m], samples[:, :m], confidence=params.confidence)
    span = slice(m, m + len(pairs))
    intervals = bca_mean_intervals(differences, totals[span], samples[:, span], confidence=params.confidence)
    tests = sign_flip_tests(differences, resamples=params.permutations, seed=params.seed) if n else []
    adjusted = holm([t.p_value for t in tests])
    counts = totals[m + len(pairs) :].reshape(len(pairs), 3)
    sample_counts = samples[:, m + len(pairs) :].reshape(len(samples), len(pairs), 3)
    # the difference is linear in score points, so it is adjusted for plain feature differences; Bradley-Terry, on
    # the logistic scale, for Chatbot Arena's normalised ones
    pair_style = [style[:, i] - style[:, j] for i, j in pairs] if style is not None else None

    results = []
    alpha = 1 - params.confidence
    for k, (i, j) in enumerate(pairs):
        sd = float(differences[:, k].std(ddof=1)) if n >= 2 else None
        p, p_holm = (tests[k].p_value, adjusted[k]) if tests else (None, None)
        comparison = Comparison(
            first=models[i],
            second=models[j],
            difference=intervals[k],
            p_value=p,
            p_holm=p_holm,
            decided=p_holm is not None and p_holm < alpha and _excludes_zero(intervals[k]),
            tasks=n,
            tasks_for_power=None
            if sd is None
            else tasks_for_power(sd, difference=params.min_difference, confidence=params.confidence),
        )
        wins, ties, losses = (int(c) for c in counts[k])
        rates = {name: wilson(int(c), n, params.confidence) for name, c in zip(OUTCOMES, (wins, ties, losses))}
        rates["decisive"] = wilson(wins, wins + losses, params.confidence)
        controlled = (
            style_controlled_difference(differences[:, k], scaled(pair_style[k]), confidence=params.confidence)
            if pair_style is not None
            else Interval(None, None, None)
        )
        results.append(PairResult(comparison, sd, rates, controlled))

    ratings = ratings_style = None
    if m >= 3:
        ratings = bradley_terry_intervals(counts, sample_counts, pairs, m, params.confidence)
        if pair_style is not None:
            normalised = [normalised_differences(style[:, i], style[:, j]) for i, j in pairs]
            ratings_style = style_controlled_ratings(
                outcomes, pairs, normalised, models=m, confidence=params.confidence
            )
    return ModelComparison(models, n, means, results, ratings, ratings_style)
