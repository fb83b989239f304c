"""The statistics behind analyze: bootstrap confidence intervals, win rates, Bradley-Terry ratings, agreement.

Bootstraps resample tasks. Every resample is a row of multinomial counts over tasks, so a statistic over all
resamples is a matrix product (counts @ per-task values) done in blocks that keep memory flat, instead of a Python
loop over resamples.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

BLOCK_BYTES = 64 * 2**20  # peak size of one block of resample counts


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None


def resample_blocks(n_units: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples as (block, n_units) float counts; the same seed gives the same resamples."""
    rng = np.random.default_rng(seed)
    per_block = max(1, min(resamples, BLOCK_BYTES // (8 * max(n_units, 1))))
    done = 0
    while done < resamples:
        size = min(per_block, resamples - done)
        yield rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=size).astype(np.float64)
        done += size


def bootstrap_ratios(numerators: np.ndarray, denominators: np.ndarray, resamples: int, seed: int,
                     confidence: float) -> list[Interval]:
    """Intervals for the ratios sum(numerator) / sum(denominator) of each column, resampling rows (tasks).

    A mean score is a ratio (score sum / scored count), and so is a win rate (wins / comparisons)."""
    n, columns = numerators.shape
    totals = denominators.sum(axis=0)
    estimates = np.divide(numerators.sum(axis=0), totals, out=np.full(columns, np.nan), where=totals > 0)
    if n == 0:
        return [Interval(None, None, None)] * columns
    samples = []
    for counts in resample_blocks(n, resamples, seed):
        top, bottom = counts @ numerators, counts @ denominators
        samples.append(np.divide(top, bottom, out=np.full_like(top, np.nan), where=bottom > 0))
    return _intervals(estimates, np.vstack(samples), confidence)


def _intervals(estimates: np.ndarray, samples: np.ndarray, confidence: float) -> list[Interval]:
    tail = (1 - confidence) / 2 * 100
    result = []
    for column, estimate in enumerate(estimates):
        values = samples[:, column]
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


def win_matrix(outcomes: np.ndarray, pairs: Sequence[tuple[int, int]], models: int, weights: np.ndarray) -> np.ndarray:
    """(..., M, M) wins with ties as half a win, from per-task outcomes weighted by resample counts (..., tasks)."""
    per_pair = np.tensordot(weights, outcomes, axes=([-1], [0]))  # (..., pairs, 3)
    wins = np.zeros(per_pair.shape[:-2] + (models, models))
    for k, (i, j) in enumerate(pairs):
        wins[..., i, j] = per_pair[..., k, 0] + 0.5 * per_pair[..., k, 1]
        wins[..., j, i] = per_pair[..., k, 2] + 0.5 * per_pair[..., k, 1]
    return wins


def bradley_terry_intervals(outcomes: np.ndarray, pairs: Sequence[tuple[int, int]], models: int, resamples: int,
                            seed: int, confidence: float) -> list[Interval]:
    """Elo-scale ratings and bootstrap intervals over tasks."""
    n = outcomes.shape[0]
    if n == 0 or not outcomes.any():
        return [Interval(None, None, None)] * models
    estimate = elo_scale(bradley_terry(win_matrix(outcomes, pairs, models, np.ones(n))))
    samples = [elo_scale(bradley_terry(win_matrix(outcomes, pairs, models, counts)))
               for counts in resample_blocks(n, resamples, seed)]
    return _intervals(np.where(np.isfinite(estimate), estimate, np.nan), np.vstack(samples), confidence)


def ordinal_alpha(ratings: np.ndarray, value_domain: Sequence[int]) -> float | None:
    """Krippendorff's alpha (ordinal) of a raters x units matrix with NaN for no rating; None when undefined
    (no unit rated twice, or a single value used throughout)."""
    import krippendorff

    if ratings.size == 0 or not ((np.isfinite(ratings).sum(axis=0)) >= 2).any():
        return None
    values = ratings[np.isfinite(ratings)]
    if np.unique(values).size < 2:
        return None
    result = krippendorff.alpha(reliability_data=ratings, level_of_measurement="ordinal", value_domain=list(value_domain))
    return float(result) if np.isfinite(result) else None
