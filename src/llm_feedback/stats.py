"""The statistics behind analyze: bootstrap confidence intervals, win rates, Bradley-Terry ratings, agreement.

Bootstraps resample tasks. A resample is a row of counts (how often each task was drawn), so the sums behind every
statistic, over all resamples at once, are one matrix product (counts @ per-task values), done in blocks that keep
memory flat, instead of a Python loop over resamples.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

BLOCK_BYTES = 64 * 2**20  # peak size of one block of resample counts
MULTINOMIAL_UNITS = 4096  # up to this many distinct units, resamples come straight from a multinomial


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None


def resample_blocks(weights: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples as (block, units) counts: how often each unit was drawn. A unit of weight k
    stands for k identical tasks, so every resample draws sum(weights) tasks. The same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(weights, dtype=np.int64)
    units, tasks = len(weights), int(weights.sum())
    per_block = max(1, min(resamples, BLOCK_BYTES // (8 * max(units, tasks if units > MULTINOMIAL_UNITS else 1))))
    task_unit = np.repeat(np.arange(units), weights) if units > MULTINOMIAL_UNITS else None
    done = 0
    while done < resamples:
        size = min(per_block, resamples - done)
        if task_unit is None:  # few distinct units: draw straight from their multinomial
            counts = rng.multinomial(tasks, weights / tasks, size=size)
        else:  # many: draw tasks, count them per unit
            drawn = task_unit[rng.integers(0, tasks, size=(size, tasks))] + (np.arange(size) * units)[:, None]
            counts = np.bincount(drawn.ravel(), minlength=size * units).reshape(size, units)
        yield counts.astype(np.float64)
        done += size


def bootstrap_sums(values: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of a (tasks, K) matrix, over all tasks and over each resample of tasks: shapes (K,) and
    (resamples, K).

    Every statistic here is a function of such sums (a mean is a score sum over a count; Bradley-Terry needs win
    counts), so one pass over the resamples serves them all. Tasks with identical rows are drawn as one unit with
    their multiplicity, which is the same bootstrap: scores on a 0-7 scale leave few distinct rows, and drawing
    from a multinomial over a few hundred of them is far cheaper than drawing 50k task indices per resample."""
    if values.shape[0] == 0:
        return values.sum(axis=0), np.zeros((0, values.shape[1]))
    patterns, multiplicity = np.unique(values, axis=0, return_counts=True)
    samples = [counts @ patterns for counts in resample_blocks(multiplicity, resamples, seed)]
    return values.sum(axis=0), np.vstack(samples)


def _intervals(estimates: np.ndarray, samples: np.ndarray, confidence: float) -> list[Interval]:
    tail = (1 - confidence) / 2 * 100
    result = []
    for column, estimate in enumerate(estimates):
        values = samples[:, column] if samples.shape[0] else samples[:0, 0]
        values = values[np.isfinite(values)]
        if not np.isfinite(estimate) or values.size == 0:
            result.append(Interval(None, None, None))
            continue
        low, high = np.percentile(values, [tail, 100 - tail])
        result.append(Interval(float(estimate), float(low), float(high)))
    return result


def pair_outcomes(scores: np.ndarray, margin: float) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Per task and pair of models (i < j): win, tie and loss of i against j, as (tasks, pairs, 3) 0/1 values.

    A tie is a difference of at most `margin`. Tasks where either model has no score count for nothing."""
    pairs = list(itertools.combinations(range(scores.shape[1]), 2))
    out = np.zeros((scores.shape[0], len(pairs), 3))
    for k, (i, j) in enumerate(pairs):
        difference = scores[:, i] - scores[:, j]
        valid = np.isfinite(difference)
        out[:, k, 0] = valid & (difference > margin)
        out[:, k, 1] = valid & (np.abs(difference) <= margin)
        out[:, k, 2] = valid & (difference < -margin)
    return pairs, out


def bradley_terry(wins: np.ndarray, iterations: int = 10_000, tolerance: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood strengths from (..., M, M) win counts (wins[i, j]: i beat j; a tie is half a win each),
    by Hunter's MM algorithm, vectorised over leading dimensions. Strengths have geometric mean 1; a model that
    never won gets strength 0."""
    wins = np.asarray(wins, dtype=np.float64)
    games = wins + np.swapaxes(wins, -1, -2)
    won = wins.sum(axis=-1)
    strength = np.ones(wins.shape[:-1])
    for _ in range(iterations):
        pair_sum = strength[..., :, None] + strength[..., None, :]
        denominator = np.where(games > 0, games / np.where(pair_sum > 0, pair_sum, 1), 0).sum(axis=-1)
        updated = np.divide(won, denominator, out=np.zeros_like(won), where=denominator > 0)
        positive = updated > 0
        log_mean = np.where(positive, np.log(np.where(positive, updated, 1)), 0).sum(axis=-1, keepdims=True)
        log_mean /= np.maximum(positive.sum(axis=-1, keepdims=True), 1)
        updated = updated / np.exp(log_mean)
        converged = np.max(np.abs(updated - strength)) < tolerance
        strength = updated
        if converged:
            break
    return strength


def elo_scale(strength: np.ndarray) -> np.ndarray:
    """Strengths as ratings on the Elo scale Chatbot Arena uses: 400 points = 10:1 odds, centred on 1000."""
    with np.errstate(divide="ignore"):
        return 1000 + 400 * np.log10(strength)


def win_matrix(pair_counts: np.ndarray, pairs: Sequence[tuple[int, int]], models: int) -> np.ndarray:
    """(..., M, M) wins, ties counted as half a win each (as Chatbot Arena does), from (..., pairs, 3) counts of
    win, tie and loss of the first model of each pair."""
    wins = np.zeros(pair_counts.shape[:-2] + (models, models))
    for k, (i, j) in enumerate(pairs):
        wins[..., i, j] = pair_counts[..., k, 0] + 0.5 * pair_counts[..., k, 1]
        wins[..., j, i] = pair_counts[..., k, 2] + 0.5 * pair_counts[..., k, 1]
    return wins


def bradley_terry_intervals(
    pair_counts: np.ndarray,
    sample_pair_counts: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    models: int,
    confidence: float,
) -> list[Interval]:
    """Elo-scale ratings from (pairs, 3) outcome counts, with intervals from the same counts per resample."""
    if not pair_counts.any():
        return [Interval(None, None, None)] * models
    estimate = elo_scale(bradley_terry(win_matrix(pair_counts, pairs, models)))
    samples = elo_scale(bradley_terry(win_matrix(sample_pair_counts, pairs, models)))
    return _intervals(np.where(np.isfinite(estimate), estimate, np.nan), samples, confidence)


def ordinal_alpha(ratings: np.ndarray, value_domain: Sequence[int]) -> float | None:
    """Krippendorff's alpha (ordinal) of a raters x units matrix with NaN for no rating; None when undefined
    (no unit rated twice, or a single value used throughout)."""
    import krippendorff

    if ratings.size == 0 or not ((np.isfinite(ratings).sum(axis=0)) >= 2).any():
        return None
    values = ratings[np.isfinite(ratings)]
    if np.unique(values).size < 2:
        return None
    result = krippendorff.alpha(
        reliability_data=ratings, level_of_measurement="ordinal", value_domain=list(value_domain)
    )
    return float(result) if np.isfinite(result) else None
