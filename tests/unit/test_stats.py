"""Statistics checked on cases small enough to compute by hand, and against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from llm_feedback.analysis import _agreement, aggregate_scores
from llm_feedback.paired import bca_mean_intervals
from llm_feedback.stats import (
    bootstrap_sums,
    bradley_terry,
    elo_scale,
    pair_outcomes,
    resample_blocks,
    win_matrix,
)


@pytest.mark.parametrize("units", [50, 5000], ids=["multinomial", "drawn-tasks"])
def test_resamples_draw_as_many_tasks_as_there_are_and_repeat_with_the_seed(units: int) -> None:
    weights = np.arange(units) % 3 + 1  # a unit may stand for several identical tasks
    counts = np.vstack(list(resample_blocks(weights, 300, seed=3)))
    assert counts.shape == (300, units) and (counts.sum(axis=1) == weights.sum()).all()
    assert np.array_equal(counts, np.vstack(list(resample_blocks(weights, 300, seed=3))))
    assert not np.array_equal(counts, np.vstack(list(resample_blocks(weights, 300, seed=4))))
    assert np.allclose(counts.mean(axis=0) / weights, 1, atol=0.35), "a unit is drawn in proportion to its weight"
    assert abs(counts.mean(axis=0).sum() / weights.sum() - 1) < 1e-9


def test_identical_tasks_drawn_as_one_unit_give_the_same_bootstrap() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 8, size=(3000, 1)).astype(float)  # 8 distinct rows stand for 3000 tasks
    columns = np.hstack([scores, np.ones_like(scores)])
    totals, samples = bootstrap_sums(columns, 4000, seed=1)
    compressed = np.percentile(samples[:, 0] / samples[:, 1], [2.5, 97.5])
    means = np.array([scores[rng.integers(0, 3000, 3000)].mean() for _ in range(4000)])  # task by task
    low, high = np.percentile(means, [2.5, 97.5])
    assert totals[0] / totals[1] == pytest.approx(scores.mean())
    assert compressed[0] == pytest.approx(low, abs=0.02) and compressed[1] == pytest.approx(high, abs=0.02)
    assert (samples[:, 1] == 3000).all()


def test_a_mean_and_its_interval() -> None:
    scores = np.array([[1.0], [2.0], [3.0], [6.0]])
    totals, samples = bootstrap_sums(scores, 2000, seed=0)
    [interval] = bca_mean_intervals(scores, totals, samples, confidence=0.95)
    assert interval.estimate == 3.0
    assert 1.0 <= interval.low < 3.0 < interval.high <= 6.0
    # a bootstrap mean can only take values between the smallest and largest score; at 95% it stays well inside
    assert interval.low < 2.0 and interval.high > 4.0

    constant = np.full((5, 1), 4.0)
    totals, samples = bootstrap_sums(constant, 200, seed=0)
    [interval] = bca_mean_intervals(constant, totals, samples, confidence=0.95)
    assert (interval.estimate, interval.low, interval.high) == (4.0, 4.0, 4.0)


def test_win_tie_loss_by_hand() -> None:
    # tasks x models a, b; the last task has no score for b
    scores = np.array([[5, 3], [4, 4], [2, 6], [6, 5.5], [7, np.nan]])
    pairs, outcomes = pair_outcomes(scores, margin=0.0)
    assert pairs == [(0, 1)]
    assert outcomes[:, 0].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]
    _, with_margin = pair_outcomes(scores, margin=0.5)
    assert with_margin[3, 0].tolist() == [0, 1, 0], "a difference within the margin is a tie"
    assert win_matrix(outcomes.sum(axis=0), pairs, 2).tolist() == [[0, 2.5], [1.5, 0]], "a tie is half a win each"


def negative_log_likelihood(log_strength: np.ndarray, wins: np.ndarray) -> float:
    difference = log_strength[:, None] - log_strength[None, :]
    return float(np.sum(wins * np.logaddexp(0, -difference)))


def test_bradley_terry_matches_an_independent_maximum_likelihood_fit() -> None:
    rng = np.random.default_rng(1)
    wins = rng.integers(1, 30, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    ours = np.log(bradley_terry(wins))
    fit = minimize(negative_log_likelihood, np.zeros(4), args=(wins,), method="BFGS", options={"gtol": 1e-10})
    theirs = fit.x - fit.x.mean()
    assert np.allclose(ours - ours.mean(), theirs, atol=1e-5)
    assert abs(np.exp(ours).prod() - 1) < 1e-9, "strengths have geometric mean 1"


def test_bradley_terry_by_hand_and_vectorised() -> None:
    # a beats b 2 of 3 times: strengths 2:1, i.e. 400 * log10(2) = 120.4 Elo points apart
    wins = np.array([[0.0, 2.0], [1.0, 0.0]])
    ratings = elo_scale(bradley_terry(wins))
    assert ratings[0] - ratings[1] == pytest.approx(400 * np.log10(2), abs=1e-6)
    stacked = np.stack([wins, wins.T])
    both = elo_scale(bradley_terry(stacked))
    assert np.allclose(both[0], ratings) and np.allclose(both[1], ratings[::-1]), "one fit per leading index"


def test_krippendorffs_published_ordinal_example_through_annotation_rows() -> None:
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
    ordinal alpha = 0.815."""
    nan = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    rows = pd.DataFrame(
        [
            {"record_id": f"r{unit:02d}", "annotator": f"observer-{k}", "position": 1, "score": float(value)}
            for k, values in enumerate(data)
            for unit, value in enumerate(values)
            if not np.isnan(value)
        ]
    )
    agreement = _agreement(rows, range(0, 8))
    assert agreement["score_response_1"]["alpha"] == pytest.approx(0.815, abs=5e-4)
    assert agreement["score_response_1"]["records"] == 11, "unit 12 has a single rating and does not count"


def test_agreement_is_null_without_overlap() -> None:
    rows = pd.DataFrame(
        [
            {"record_id": "r1", "annotator": "a", "position": 1, "score": 3.0},
            {"record_id": "r2", "annotator": "b", "position": 1, "score": 5.0},
        ]
    )
    assert _agreement(rows, range(0, 8))["all"] == {"alpha": None, "records": 0}


def test_aggregation_of_several_annotators() -> None:
    rows = pd.DataFrame({"task_id": ["t"] * 4 + ["u"] * 2, "model": ["m"] * 6, "score": [2.0, 2.0, 5.0, 7.0, 3.0, 6.0]})
    get = lambda how: aggregate_scores(rows, how).set_index("task_id")["score"].to_dict()  # noqa: E731
    assert get("mean") == {"t": 4.0, "u": 4.5}
    assert get("median") == {"t": 3.5, "u": 4.5}
    assert get("majority") == {"t": 2.0, "u": 4.5}, "the most frequent score; a tie goes to the median"
    three = pd.DataFrame({"task_id": ["v"] * 3, "model": ["m"] * 3, "score": [1.0, 4.0, 6.0]})
    assert aggregate_scores(three, "majority")["score"].tolist() == [4.0], "three different scores: the middle one"


def test_majority_does_not_pull_scores_down_with_two_noisy_raters() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(2, 6, 2000).astype(float)
    noisy = np.clip(np.rint(truth[:, None] + rng.normal(0, 1.0, (2000, 2))), 0, 7)
    rows = pd.DataFrame({"task_id": np.repeat(np.arange(2000), 2), "model": "m", "score": noisy.ravel()})
    majority = aggregate_scores(rows, "majority")["score"].mean()
    assert abs(majority - aggregate_scores(rows, "mean")["score"].mean()) < 0.02
    assert abs(majority - truth.mean()) < 0.1
