"""The direct preference ("Which response is better?"): how responses become pair outcomes, the rates and ratings
against independent computations, and on simulated annotators with a known truth the intervals' coverage."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from llm_feedback.analysis import usable_annotations
from llm_feedback.preferences import preference_metrics, preference_outcomes

SURE = 0.001


def rows_of(responses: list[tuple[str, str, list[str], str | None]]) -> pd.DataFrame:
    """(task, annotator, models shown, preferred) -> annotation rows, one per model shown."""
    return pd.DataFrame(
        [
            {
                "record_id": task,
                "task_id": task,
                "annotator": annotator,
                "model": model,
                "position": position,
                "score": 3,
                "status": "submitted",
                "to_correct": None,
                "problem": None,
                "preferred": preferred,
                "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
            for task, annotator, shown, preferred in responses
            for position, model in enumerate(shown, 1)
        ]
    )


def test_a_preferred_answer_beats_every_other_on_its_record_and_a_tie_ties_them_all() -> None:
    models = ["a", "b", "c"]
    rows = rows_of(
        [
            ("t1", "x", models, "c"),  # c beats a and b; a vs b: nothing
            ("t1", "y", models, "tie"),  # every pair ties
            ("t2", "x", models, "a"),
            ("t3", "x", ["a", "b"], "b"),  # c not shown: a vs b only
            ("t4", "x", models, None),  # not answered
        ]
    )
    tasks, counts, responses = preference_outcomes(rows, models)
    assert list(tasks) == ["t1", "t2", "t3"] and responses == 4
    # pairs: (a, b), (a, c), (b, c); outcome of the first: win, tie, loss
    assert counts[0].tolist() == [[0, 1, 0], [0, 1, 1], [0, 1, 1]]
    assert counts[1].tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert counts[2].tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_rates_are_wilsons_and_two_models_ratings_follow_their_odds() -> None:
    responses = [(f"t{i}", "x", ["a", "b"], "a") for i in range(30)]
    responses += [(f"t{i}", "x", ["a", "b"], "b") for i in range(30, 40)]
    responses += [(f"t{i}", "x", ["a", "b"], "tie") for i in range(40, 50)]
    found = preference_metrics(rows_of(responses), ["a", "b"], confidence=0.95, resamples=2000, seed=1)
    pair = found["pairwise"]["a_vs_b"]
    assert (found["responses"], found["tasks"], pair["comparisons"]) == (50, 50, 50)
    low, high = proportion_confint(30, 50, alpha=0.05, method="wilson")
    assert pair["win"] == {"rate": 0.6, "ci_low": pytest.approx(low), "ci_high": pytest.approx(high)}
    low, high = proportion_confint(30, 40, alpha=0.05, method="wilson")
    assert (pair["decisive"]["ci_low"], pair["decisive"]["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # two models: strengths in the ratio of half-tie wins, 35 : 15, centred on 1000
    gap = 400 * math.log10(35 / 15)
    ratings = found["bradley_terry"]
    assert ratings["a"]["rating"] == pytest.approx(1000 + gap / 2, abs=1e-6)
    assert ratings["b"]["rating"] == pytest.approx(1000 - gap / 2, abs=1e-6)
    assert ratings["a"]["ci_low"] < ratings["a"]["rating"] < ratings["a"]["ci_high"]
    assert (
        preference_metrics(rows_of([("t", "x", ["a", "b"], None)]), ["a", "b"], confidence=0.95, resamples=100, seed=1)
        is None
    )


def test_a_preference_for_an_answer_not_on_the_record_leaves_the_response_out() -> None:
    rows = rows_of([("t1", "x", ["a", "b"], "c"), ("t2", "x", ["a", "b"], "tie"), ("t3", "x", ["a", "b"], "a")])
    rows["response_sha"], rows["corrected_response"], rows["comments"] = "s", None, None
    kept, left_out = usable_annotations(rows)
    assert sorted(kept["record_id"].unique()) == ["t2", "t3"] and left_out.invalid == 1
    assert "preferred 'c' is none of the record's models nor a tie" in left_out.first


@pytest.mark.slow
def test_on_simulated_annotators_the_rates_and_ratings_cover_the_truth() -> None:
    """300 studies of 150 tasks, one annotator each, who prefers a with chance 0.45, ties 0.2, prefers b 0.35: the
    win, tie and decisive intervals and a's rating interval each cover the truth 93-97% of the time."""
    rng = np.random.default_rng(7)
    p = {"a": 0.45, "tie": 0.2, "b": 0.35}
    truth_rating = 1000 + 200 * math.log10((p["a"] + p["tie"] / 2) / (p["b"] + p["tie"] / 2))
    truths = {"win": p["a"], "tie": p["tie"], "decisive": p["a"] / (p["a"] + p["b"])}
    covered = {name: 0 for name in [*truths, "rating"]}
    studies = 300
    for _ in range(studies):
        picks = rng.choice(list(p), size=150, p=list(p.values()))
        found = preference_metrics(
            rows_of([(f"t{i}", "x", ["a", "b"], pick) for i, pick in enumerate(picks)]),
            ["a", "b"],
            confidence=0.95,
            resamples=300,
            seed=int(rng.integers(1 << 30)),
        )
        pair = found["pairwise"]["a_vs_b"]
        for name, truth in truths.items():
            covered[name] += pair[name]["ci_low"] <= truth <= pair[name]["ci_high"]
        rating = found["bradley_terry"]["a"]
        covered["rating"] += rating["ci_low"] <= truth_rating <= rating["ci_high"]
    low, high = binom.ppf(SURE, studies, 0.93) / studies, binom.isf(SURE, studies, 0.97) / studies
    for name, count in covered.items():
        assert low <= count / studies <= high, (name, count / studies)
