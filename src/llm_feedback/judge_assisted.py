"""The verdict with the judge's help: prediction-powered estimates (ppi.py) of each model's mean and each pair's
difference, from the judge's scores on every task and the humans' on the tasks they rated, beside the humans alone.

Labelled tasks are the verdict's complete cases that the judge also scored for every compared model; the judge's
side is every task it scored for every compared model. The gain is reported as effective human tasks: how many
human labels the humans alone would need for the same certainty.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa

from llm_feedback.ppi import PPIEstimate, judge_human_correlations, ppi_mean
from llm_feedback.round_sequence import last_scored_round

MIN_LABELLED = 2


def judge_assisted(
    *,
    humans: pd.DataFrame,
    judgments: pa.Table,
    models: list[str],
    confidence: float,
    chances: dict[str, tuple[int, list[float]]],
) -> dict | None:
    """`humans`: (tasks, models) per-task human scores of the complete cases; `chances`: the push receipt's, when
    records were published in rounds (empty: the rated tasks are taken for a uniform random sample). None without
    enough of both."""
    judge = judge_scores(judgments, models)
    labelled, sampling_probability = _design(humans.index.intersection(judge.index), chances)
    if len(labelled) < MIN_LABELLED:
        return None
    human, judge_labelled = humans.loc[labelled, models].to_numpy(float), judge.loc[labelled].to_numpy(float)
    everything = judge.to_numpy(float)
    probability = None if sampling_probability is None else sampling_probability.reindex(labelled).to_numpy(float)

    def estimate(h: np.ndarray, f: np.ndarray, f_all: np.ndarray) -> PPIEstimate:
        return ppi_mean(
            human=h, judge_labeled=f, judge_all=f_all, confidence=confidence, sampling_probability=probability
        )

    correlations = judge_human_correlations(human=human, judge=judge_labelled)
    result: dict = {
        "human_tasks": len(labelled),
        "judge_tasks": len(judge),
        "correlation": {
            "answers": _round(correlations.answers),
            "differences": {f"{models[i]}_vs_{models[j]}": _round(r) for (i, j), r in correlations.differences.items()},
        },
        "models": {},
        "pairwise": {},
    }
    for k, model in enumerate(models):
        result["models"][model] = _entry(estimate(human[:, k], judge_labelled[:, k], everything[:, k]), "mean")
    for i, j in itertools.combinations(range(len(models)), 2):
        difference = [h[:, i] - h[:, j] for h in (human, judge_labelled, everything)]
        fit = estimate(*difference)
        result["pairwise"][f"{models[i]}_vs_{models[j]}"] = _entry(fit, "difference")
    return result


def judge_scores(judgments: pa.Table, models: list[str]) -> pd.DataFrame:
    """(tasks, models) the judge's score of each compared answer, on the tasks where it scored every one."""
    judged = judgments.select(["task_id", "model", "score"]).to_pandas().dropna(subset=["score"])
    return (
        judged[judged["model"].isin(models)]
        .drop_duplicates(["task_id", "model"], keep="last")
        .pivot(index="task_id", columns="model", values="score")
        .reindex(columns=models)
        .dropna()
        .astype(float)
    )


def squared_residuals(humans: pd.DataFrame, judge: pd.DataFrame, models: list[str]) -> dict[str, float]:
    """task -> the squared residual of the humans' per-task difference on the judge's (slope fitted by least squares,
    at least 0), averaged over the compared pairs, on the tasks both scored: where the judge's differences miss the
    humans'."""
    tasks = humans.index.intersection(judge.index)
    if len(tasks) < 2:
        return {}
    total = np.zeros(len(tasks))
    pairs = list(itertools.combinations(models, 2))
    for a, b in pairs:
        dh = (humans.loc[tasks, a] - humans.loc[tasks, b]).to_numpy(float)
        dj = (judge.loc[tasks, a] - judge.loc[tasks, b]).to_numpy(float)
        dh, dj = dh - dh.mean(), dj - dj.mean()
        spread = float(dj @ dj)
        slope = max(float(dh @ dj) / spread, 0.0) if spread > 0 else 0.0
        total += (dh - slope * dj) ** 2
    return dict(zip(tasks, (total / len(pairs)).tolist(), strict=True))


def _design(rated: pd.Index, chances: dict[str, tuple[int, list[float]]]) -> tuple[pd.Index, pd.Series | None]:
    """The labelled tasks and their chances of having been labelled. In rounds, the tasks published by round L are
    a draw with known chances (the receipt's); the labels are that draw once every one of its tasks is rated, so
    PPI takes the last round L whose tasks are all rated, its tasks and their chances by L (a later round, rated in
    part, is left out: who rated what first is no random draw)."""
    if not chances:
        return rated, None
    complete_round = last_scored_round(chances, scored=set(rated), rounds=max(r for r, _ in chances.values()))
    tasks = pd.Index(sorted(t for t, (r, _) in chances.items() if r <= complete_round), name=rated.name)
    return tasks, pd.Series({t: chances[t][1][complete_round - chances[t][0]] for t in tasks}, dtype=float)


def _entry(fit: PPIEstimate, name: str) -> dict:
    width, human_width = fit.high - fit.low, fit.human.high - fit.human.low
    return {
        name: _round(fit.estimate),
        "ci_low": _round(fit.low),
        "ci_high": _round(fit.high),
        "lambda": _round(fit.lam),
        "effective_human_tasks": _round(fit.effective_human_tasks, 1),
        "human_only": {
            name: _round(fit.human.estimate),
            "ci_low": _round(fit.human.low),
            "ci_high": _round(fit.human.high),
        },
        "width_ratio": _round(width / human_width) if human_width > 0 else None,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)
