"""What the direct question "Which response is better?" (annotation.preference) says, beside the scores: each pair's
win, tie and loss rates with Wilson intervals, and Bradley-Terry ratings (ties as half a win each, as Chatbot Arena
counts them) with intervals from a bootstrap over tasks.

A response naming one answer the best says that answer beat every other on the record, and nothing of how the others
compare with each other; a tie says every pair tied. Each submitted response counts once, so a task rated by three
annotators counts three times, and the bootstrap resamples whole tasks, which keeps their annotators together.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from llm_feedback.annotation.dataset_settings import TIE
from llm_feedback.paired import wilson
from llm_feedback.stats import bootstrap_sums, bradley_terry_intervals

OUTCOMES = ("win", "tie", "loss")


def preference_outcomes(rows: pd.DataFrame, models: list[str]) -> tuple[pd.Index, np.ndarray, int]:
    """(tasks, pairs, 3) counts of win, tie and loss of the first model of each pair (i < j in `models`' order)
    from the submitted rows' `preferred`; the tasks in order; and how many responses answered."""
    answered = rows[(rows["status"] == "submitted") & rows["preferred"].notna()]
    responses = answered.drop_duplicates(["record_id", "annotator"])
    shown = answered.groupby(["record_id", "annotator"])["model"].agg(frozenset)
    tasks = pd.Index(sorted(responses["task_id"].unique()), name="task_id")
    at = {task: k for k, task in enumerate(tasks)}
    pairs = list(itertools.combinations(range(len(models)), 2))
    counts = np.zeros((len(tasks), len(pairs), 3))
    for record, annotator, task, preferred in responses[["record_id", "annotator", "task_id", "preferred"]].itertuples(
        index=False
    ):
        on_record = shown[record, annotator]
        for k, (i, j) in enumerate(pairs):
            a, b = models[i], models[j]
            if a not in on_record or b not in on_record:
                continue
            if preferred == TIE:
                counts[at[task], k, 1] += 1
            elif preferred == a:
                counts[at[task], k, 0] += 1
            elif preferred == b:
                counts[at[task], k, 2] += 1
    return tasks, counts, len(responses)


def preference_metrics(
    rows: pd.DataFrame, models: list[str], *, confidence: float, resamples: int, seed: int
) -> dict | None:
    """metrics.json's `preference`, or None when no response answered the question."""
    tasks, counts, responses = preference_outcomes(rows, models)
    if not counts.any():
        return None
    pairs = list(itertools.combinations(range(len(models)), 2))
    total, samples = bootstrap_sums(counts.reshape(len(tasks), -1), resamples, seed)
    total, samples = total.reshape(len(pairs), 3), samples.reshape(-1, len(pairs), 3)
    result: dict = {"responses": responses, "tasks": len(tasks), "pairwise": {}}
    for k, (i, j) in enumerate(pairs):
        wins, ties, losses = (int(c) for c in total[k])
        n = wins + ties + losses
        entry: dict = {"comparisons": n}
        for name, count in zip(OUTCOMES, (wins, ties, losses)):
            rate = wilson(count, n, confidence)
            entry[name] = {"rate": rate.estimate, "ci_low": rate.low, "ci_high": rate.high}
        decisive = wilson(wins, wins + losses, confidence)
        entry["decisive"] = {"rate": decisive.estimate, "ci_low": decisive.low, "ci_high": decisive.high}
        result["pairwise"][f"{models[i]}_vs_{models[j]}"] = entry
    ratings = bradley_terry_intervals(total, samples, pairs, len(models), confidence)
    result["bradley_terry"] = {
        model: {"rating": r.estimate, "ci_low": r.low, "ci_high": r.high} for model, r in zip(models, ratings)
    }
    return result
