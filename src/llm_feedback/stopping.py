"""When to stop annotating: once every compared pair's difference is decided by an anytime-valid sequence
(round_sequence.py) with a look after each round, so that checking after every round does not raise the chance of a
false decision. All pairs must be decided: if any pair truly differs by nothing, stopping falsely needs that pair
falsely decided, which its sequence keeps below 1 - analyze.confidence.

The scores are analyze's: the usable submitted scores of current answers, aggregated per task, on the complete
cases. A look at round r takes the tasks published by r, each weighted by one over its chance of having been
published by then (the receipt's): with random selection every weight is the same; with active selection, which
publishes the close comparisons first, the weights keep the mean that of every task. Looks run up to the last round
whose tasks are all scored (a round scored in part is no random draw: who rated what first is not). When the judge
scored every compared answer of the tasks, its scores join the humans' (prediction-powered): the same certainty
comes with fewer human labels where the judge tracks the humans, and no less without it. A task published outside
rounds counts as certain, from the first look."""

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
from llm_feedback.confidence_sequence import decided
from llm_feedback.judge_assisted import judge_scores
from llm_feedback.params import AnalyzeParams
from llm_feedback.round_sequence import Labels, by_round, last_scored_round, round_sequence
from llm_feedback.stats import Interval


@dataclass(frozen=True)
class Stopping:
    """Each compared pair's interval at the last look ("a_vs_b": the first model minus the second), the round of
    that look (0: none yet), and whether the judge's scores took part."""

    pairs: dict[str, Interval]
    looked_at: int = 0
    judge_assisted: bool = False

    @property
    def decided(self) -> bool:
        return bool(self.pairs) and all(decided(interval) for interval in self.pairs.values())


def human_scores(
    *, annotations: pa.Table, generations: pa.Table, compare: list[str], params: AnalyzeParams, scale: range
) -> pd.DataFrame:
    """analyze's complete cases ((tasks, models) per-task scores) from pull's rows; `scale`: the rubric's."""
    rows, _ = usable_annotations(annotations.to_pandas(), scale=scale)
    rows, _ = without_annotators(rows, params.exclude_annotators)
    submitted, _ = current_scores(rows, generations)
    return complete_cases(aggregate_scores(submitted, params.aggregate), compare)


def stopping_on(
    complete: pd.DataFrame,
    *,
    compare: list[str],
    confidence: float,
    receipt: Receipt,
    judgments: pa.Table | None = None,
) -> Stopping:
    """`complete`: analyze's complete cases ((tasks, models) per-task scores, human_scores); `receipt`: push's, for
    each task's round and chances of being published; `judgments`: the judge stage's, when it ran."""
    rounds = max(receipt.current_round, 1)
    chances = {**{task: (1, [1.0] * rounds) for task in complete.index}, **receipt.chances()}
    population = receipt.rounds[-1]["tasks"] if receipt.rounds else len(complete)
    judge = judge_scores(judgments, compare) if judgments is not None else None
    if judge is not None and judge.index.isin(list(chances)).any():
        # the rounds' draw restricted to the tasks the judge scored is a draw from those, with the same chances
        chances = {task: chance for task, chance in chances.items() if task in judge.index}
        population = len(judge)
    else:
        judge = None
    last = last_scored_round(chances, scored=set(complete.index), rounds=rounds)
    tasks = sorted(task for task, (first, _) in chances.items() if first <= last)
    first_round, matrix = by_round(chances, tasks=tasks, last=last)
    pairs = {}
    for a, b in itertools.combinations(compare, 2):
        labels = Labels(
            human=(complete.loc[tasks, a] - complete.loc[tasks, b]).to_numpy(dtype=np.float64),
            judge=None if judge is None else (judge.loc[tasks, a] - judge.loc[tasks, b]).to_numpy(dtype=np.float64),
            first_round=first_round,
            chances=matrix,
        )
        looks = round_sequence(
            labels,
            judge_mean=None if judge is None else float((judge[a] - judge[b]).mean()),
            tasks=max(population, len(tasks), 1),
            confidence=confidence,
            planned_tasks=max(population, 1),
        )
        pairs[f"{a}_vs_{b}"] = looks[-1] if last else Interval(None, None, None)
    return Stopping(pairs, looked_at=last, judge_assisted=judge is not None)


def rounds_summary(stop: Stopping, receipt: Receipt) -> tuple[dict, str]:
    """metrics.json's `rounds` and the words analyze's line starts with: stop, or how many records the latest round
    (which push publishes before pull and analyze run) asks annotators for."""
    latest = receipt.rounds[-1]["round"]
    records = sum(1 for entry in receipt.blinding.values() if entry.get("round") == latest)
    metrics = {
        "round": latest,
        "latest_round_records": records,
        "looked_at_round": stop.looked_at,
        "judge_assisted": stop.judge_assisted,
        "decided": stop.decided,
        "pairs": {
            pair: {
                "difference": interval.estimate,
                "ci_low": interval.low,
                "ci_high": interval.high,
                "decided": decided(interval),
            }
            for pair, interval in stop.pairs.items()
        },
    }
    if stop.decided:
        return metrics, "decided: stop annotating" + (" (judge-assisted)" if stop.judge_assisted else "")
    return metrics, f"next round: {records} records (round {latest})"
