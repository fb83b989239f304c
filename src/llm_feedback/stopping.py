"""When to stop annotating: once every compared pair's difference is decided by an anytime-valid confidence sequence
(confidence_sequence.py) on the human scores so far, with a look after each round, so that checking after every
round does not raise the chance of a false decision. All pairs must be decided: if any pair truly differs by
nothing, stopping falsely needs that pair falsely decided, which its sequence keeps below 1 - analyze.confidence.

The scores are analyze's: the usable submitted scores of current answers, aggregated per task, on the complete
cases. Each task's difference is weighted by one over its chance of having been published by the last round (the
receipt's), normalised to a mean of 1: with random selection every weight is 1; with active selection, which
publishes the close comparisons first, the weights keep the mean that of every task. A task published outside rounds
counts as certain, at the first look."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from llm_feedback.analysis import (
    aggregate_scores,
    complete_cases,
    current_scores,
    usable_annotations,
    without_annotators,
)
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.confidence_sequence import decided, running
from llm_feedback.params import AnalyzeParams
from llm_feedback.stats import Interval


@dataclass(frozen=True)
class Stopping:
    """Each compared pair's interval after the last round ("a_vs_b": the first model minus the second)."""

    pairs: dict[str, Interval]

    @property
    def decided(self) -> bool:
        return bool(self.pairs) and all(decided(interval) for interval in self.pairs.values())


def stopping(
    *, annotations: pa.Table, generations: pa.Table, compare: list[str], params: AnalyzeParams, receipt: Receipt
) -> Stopping:
    """`annotations`: pull's rows; `receipt`: push's, for each task's round and chance of being published."""
    rows, _ = usable_annotations(annotations.to_pandas())
    rows, _ = without_annotators(rows, params.exclude_annotators)
    submitted, _ = current_scores(rows, generations)
    complete = complete_cases(aggregate_scores(submitted, params.aggregate), compare)
    return stopping_on(complete, compare=compare, confidence=params.confidence, receipt=receipt)


def stopping_on(complete: pd.DataFrame, *, compare: list[str], confidence: float, receipt: Receipt) -> Stopping:
    """The same from analyze's complete cases ((tasks, models) per-task scores), when they are at hand."""
    sampling = receipt.sampling()
    rounds = np.array([sampling.get(task, (0, 1.0))[0] for task in complete.index], dtype=np.int64)
    weights = 1 / np.array([sampling.get(task, (0, 1.0))[1] for task in complete.index], dtype=np.float64)
    weights = weights / weights.mean() if weights.size else weights
    planned = max(receipt.rounds[-1]["tasks"] if receipt.rounds else len(complete), 1)
    pairs = {}
    for first, second in itertools.combinations(compare, 2):
        values = weights * (complete[first] - complete[second]).to_numpy(dtype=np.float64)
        looks = running(values, rounds=rounds, confidence=confidence, planned_tasks=planned)
        pairs[f"{first}_vs_{second}"] = looks[-1] if looks else Interval(None, None, None)
    return Stopping(pairs)


def rounds_summary(stop: Stopping, receipt: Receipt) -> tuple[dict, str]:
    """metrics.json's `rounds` and the words analyze's line starts with: stop, or how many records the latest round
    (which push publishes before pull and analyze run) asks annotators for."""
    latest = receipt.rounds[-1]["round"]
    records = sum(1 for entry in receipt.blinding.values() if entry.get("round") == latest)
    metrics = {
        "round": latest,
        "latest_round_records": records,
        "decided": stop.decided,
        "pairs": {
            pair: {"ci_low": interval.low, "ci_high": interval.high, "decided": decided(interval)}
            for pair, interval in stop.pairs.items()
        },
    }
    if stop.decided:
        return metrics, "decided: stop annotating"
    return metrics, f"next round: {records} records (round {latest})"
