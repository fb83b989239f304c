"""analyze: annotation rows -> which model wins, how sure we are, and whether annotators (and a judge) agree.

Only submitted scores of answers that are still current count (a score given to text that generate has since
replaced is stale). Several annotators of one task are aggregated per `analyze.aggregate`; tasks are the unit of
resampling for every interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from llm_feedback.annotation.values import OTHER_OPTIONS, SCALE, STATUSES, status_problem
from llm_feedback.artifacts import SCORES, text_sha
from llm_feedback.params import AnalyzeParams
from llm_feedback.stats import (
    Interval,
    bootstrap_sums,
    bradley_terry_intervals,
    ordinal_alpha,
    pair_outcomes,
    ratio_intervals,
)


@dataclass(frozen=True)
class Analysis:
    metrics: dict
    scores: pd.DataFrame  # task_id, model, score (aggregated), n (scores behind it)
    submitted: pd.DataFrame  # current submitted rows: task_id, record_id, annotator, model, position, score, comments
    models: list[str]
    left_out: LeftOut

    def ranking(self) -> list[tuple[str, dict]]:
        """Models with a mean score, best first."""
        scored = [(m, v) for m, v in self.metrics["models"].items() if v["mean"] is not None]
        return sorted(scored, key=lambda mv: -mv[1]["mean"])

    def scores_table(self) -> pa.Table:
        """The per-task scores as the scores artifact: export builds training data from exactly these."""
        return pa.Table.from_pandas(self.scores, schema=SCORES.schema, preserve_index=False)

    def line(self) -> str:
        counts = self.metrics["counts"]
        ranking = ", ".join(f"{m} {v['mean']:.2f}" for m, v in self.ranking())
        left_out = self.left_out.line()
        return (
            f"{counts['scored_tasks']} of {counts['tasks']} tasks scored; mean score: {ranking or 'none yet'}"
            f"{'; ' + left_out if left_out else ''}"
        )


def aggregate_scores(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    """One score per (task, model) from its annotators: mean, median, or the most frequent (ties: the lower)."""
    if rows.empty:
        return pd.DataFrame({"task_id": [], "model": [], "score": [], "n": []})
    groups = rows.groupby(["task_id", "model"], sort=True)["score"]
    counts = groups.size().rename("n")
    if how == "majority":
        tally = rows.groupby(["task_id", "model", "score"]).size().rename("votes").reset_index()
        tally = tally.sort_values(["task_id", "model", "votes", "score"], ascending=[True, True, False, True])
        score = tally.drop_duplicates(["task_id", "model"]).set_index(["task_id", "model"])["score"].astype(float)
    else:
        score = getattr(groups, how)().astype(float)
    return pd.concat([score.rename("score"), counts], axis=1).reset_index()


def analyze(
    *,
    annotations: pa.Table,
    generations: pa.Table,
    compare: list[str],
    params: AnalyzeParams,
    records: int | None = None,
    judgments: pa.Table | None = None,
    executions: pa.Table | None = None,
    judge_pairwise: pa.Table | None = None,
) -> Analysis:
    """`records`: how many records the dataset holds (the push receipt's count); the optional tables are the judge's
    and execute's artifacts, None when those stages are off."""
    rows, left_out = usable_annotations(annotations.to_pandas())
    models = list(compare) + sorted(set(rows["model"]) - set(compare))
    submitted, stale = current_scores(rows, generations)
    scores = aggregate_scores(submitted, params.aggregate)

    sums = _Bootstrap.run(_score_matrix(scores, models), params)
    metrics = {
        "counts": {**_counts(rows, generations, records, scores, stale), **left_out.counts()},
        "models": _model_means(sums, submitted, models),
        "pairwise": _pairwise(sums, models),
        "bradley_terry": _bradley_terry(sums, models) if len(models) >= 3 else None,
        "corrections": _corrections(submitted, rows, models),
        "agreement": _agreement(submitted),
        "annotators": _annotators(submitted),
        "position": _positions(submitted),
        "judge": _judge(judgments, scores, models, judge_pairwise) if judgments is not None else None,
        "execution": _execution(executions, scores, models) if executions is not None else None,
    }
    return Analysis(json_safe(metrics), scores, submitted, models, left_out)


@dataclass(frozen=True)
class LeftOut:
    """Responses analyze does not count: with a value outside the dataset's settings, or repeated."""

    invalid: int
    duplicates: int
    first: str | None  # "record R by A: why", for the summary line

    def counts(self) -> dict:
        return {"invalid_responses": self.invalid, "duplicate_responses": self.duplicates}

    def line(self) -> str | None:
        parts = []
        if self.invalid:
            parts.append(
                f"{self.invalid} responses left out for a value outside the dataset's settings (first: {self.first})"
            )
        if self.duplicates:
            parts.append(
                f"{self.duplicates} repeated responses of an annotator on a record left out (the latest counts)"
            )
        return "; ".join(parts) or None


def usable_annotations(rows: pd.DataFrame) -> tuple[pd.DataFrame, LeftOut]:
    """The annotation rows that may count. A response (one annotator on one record) with any value outside the
    dataset's settings is left out whole: a score off the rating scale, an unknown status, a `to_correct` that is none
    of the record's models nor combination or neither, or a problem pull recorded. An annotator answering one record
    twice counts once, with the latest answer."""
    response = ["record_id", "annotator"]
    shown = rows[response + ["model"]].rename(columns={"model": "to_correct"}).drop_duplicates()
    label = rows[response + ["to_correct"]].merge(shown, how="left", on=response + ["to_correct"], indicator=True)
    checks = {
        "problem": rows["problem"].notna().to_numpy(),
        "status": (~rows["status"].isin(STATUSES)).to_numpy(),
        "score": (rows["score"].notna() & ~rows["score"].isin(list(SCALE))).to_numpy(),
        "to_correct": (rows["to_correct"].notna() & ~rows["to_correct"].isin(OTHER_OPTIONS)).to_numpy()
        & (label["_merge"] == "left_only").to_numpy(),
    }
    bad = np.logical_or.reduce(list(checks.values()))
    bad_responses = rows[bad].drop_duplicates(response).sort_values(response)
    first = None
    if len(bad_responses):
        at = rows.index.get_loc(bad_responses.index[0])
        row = rows.iloc[at]
        failed = next(name for name, found in checks.items() if found[at])
        first = f"record {row['record_id']} by {row['annotator']}: {_why(row, failed)}"
    keep = ~rows.set_index(response).index.isin(bad_responses.set_index(response).index)
    rows = rows[keep]
    copies = rows.groupby(response + ["position"]).size() - 1
    duplicates = int(copies.groupby(level=response).max().sum()) if len(copies) else 0
    latest = rows.sort_values("updated_at", kind="stable").drop_duplicates(response + ["position"], keep="last")
    return latest.sort_index(), LeftOut(len(bad_responses), duplicates, first)


def _why(row: pd.Series, check: str) -> str:
    if check == "problem":
        return row["problem"]
    if check == "status":
        return status_problem(row["status"])
    if check == "score":
        return f"score {int(row['score'])} for model {row['model']} is not on the {SCALE.start}-{SCALE.stop - 1} scale"
    return f"to_correct {row['to_correct']!r} is none of the record's models, combination or neither"


def current_scores(rows: pd.DataFrame, generations: pa.Table) -> tuple[pd.DataFrame, int]:
    """Submitted scores of answers generate still holds; and how many scores were left out as stale."""
    submitted = rows[(rows["status"] == "submitted") & rows["score"].notna()]
    submitted = submitted.merge(_current_shas(generations), on=["task_id", "model"], how="left")
    is_current = (submitted["response_sha"] == submitted["current_sha"]).to_numpy()
    submitted = submitted[is_current].drop(columns="current_sha")
    submitted["score"] = submitted["score"].astype(float)
    return submitted, int((~is_current).sum())


def _current_shas(generations: pa.Table) -> pd.DataFrame:
    """task_id, model, current_sha: the fingerprint of each answer generate holds now."""
    answered = generations.filter(generations.column("response").is_valid())
    return pd.DataFrame(
        {
            "task_id": answered.column("task_id").to_numpy(zero_copy_only=False),
            "model": answered.column("model").to_numpy(zero_copy_only=False),
            "current_sha": [text_sha(r) for r in answered.column("response").to_pylist()],
        }
    )


def _score_matrix(scores: pd.DataFrame, models: list[str]) -> np.ndarray:
    if scores.empty:
        return np.empty((0, len(models)))
    wide = scores.pivot(index="task_id", columns="model", values="score").reindex(columns=models)
    return wide.to_numpy(dtype=float)


def _counts(rows: pd.DataFrame, generations: pa.Table, records: int | None, scores: pd.DataFrame, stale: int) -> dict:
    responses = rows.drop_duplicates(["record_id", "annotator"])
    by_status = responses["status"].value_counts()
    return {
        "tasks": len(set(generations.column("task_id").to_pylist())),
        "records": records if records is not None else int(rows["record_id"].nunique()),
        "annotated_records": int(rows["record_id"].nunique()),
        "scored_tasks": int(scores["task_id"].nunique()) if not scores.empty else 0,
        "responses": {status: int(by_status.get(status, 0)) for status in STATUSES},
        "stale_scores": stale,
    }


def _interval(interval: Interval, digits: int = 4) -> dict:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, digits)

    return {"value": rounded(interval.estimate), "ci_low": rounded(interval.low), "ci_high": rounded(interval.high)}


@dataclass(frozen=True)
class _Bootstrap:
    """Per-task columns (score sums and counts per model; win, tie and loss per pair) summed over all tasks and over
    every resample of tasks, in one pass."""

    models: int
    pairs: list[tuple[int, int]]
    totals: np.ndarray
    samples: np.ndarray
    confidence: float

    @classmethod
    def run(cls, matrix: np.ndarray, params: AnalyzeParams) -> _Bootstrap:
        n, m = matrix.shape
        present = np.isfinite(matrix)
        pairs, outcomes = pair_outcomes(matrix, params.tie_margin)
        columns = np.hstack([np.where(present, matrix, 0.0), present, outcomes.reshape(n, len(pairs) * 3)])
        totals, samples = bootstrap_sums(columns, params.bootstrap, params.seed)
        return cls(m, pairs, totals, samples, params.confidence)

    def means(self) -> list[Interval]:
        m = self.models
        return ratio_intervals(
            self.totals[:m], self.totals[m : 2 * m], self.samples[:, :m], self.samples[:, m : 2 * m], self.confidence
        )

    def pair_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(pairs, 3) and (resamples, pairs, 3) counts of win, tie and loss."""
        p = len(self.pairs)
        return (
            self.totals[2 * self.models :].reshape(p, 3),
            self.samples[:, 2 * self.models :].reshape(self.samples.shape[0], p, 3),
        )


def _model_means(sums: _Bootstrap, submitted: pd.DataFrame, models: list[str]) -> dict:
    n_scores = submitted.groupby("model").size()
    result = {}
    for k, (model, interval) in enumerate(zip(models, sums.means())):
        mean = _interval(interval)
        result[model] = {
            "mean": mean["value"],
            "ci_low": mean["ci_low"],
            "ci_high": mean["ci_high"],
            "tasks": int(sums.totals[sums.models + k]),
            "scores": int(n_scores.get(model, 0)),
        }
    return result


def _pairwise(sums: _Bootstrap, models: list[str]) -> dict:
    totals, samples = sums.pair_counts()
    valid, sample_valid = totals.sum(axis=1, keepdims=True), samples.sum(axis=2, keepdims=True)
    width = len(sums.pairs) * 3
    intervals = ratio_intervals(
        totals.reshape(width),
        np.repeat(valid, 3, axis=1).reshape(width),
        samples.reshape(len(samples), width),
        np.repeat(sample_valid, 3, axis=2).reshape(len(samples), width),
        sums.confidence,
    )
    result = {}
    for k, (i, j) in enumerate(sums.pairs):
        entry: dict = {"tasks": int(valid[k, 0])}
        for o, outcome in enumerate(("win", "tie", "loss")):
            interval = _interval(intervals[k * 3 + o])
            entry[outcome] = interval["value"]
            entry[f"{outcome}_ci_low"], entry[f"{outcome}_ci_high"] = interval["ci_low"], interval["ci_high"]
        result[f"{models[i]}_vs_{models[j]}"] = entry
    return result


def _bradley_terry(sums: _Bootstrap, models: list[str]) -> dict:
    totals, samples = sums.pair_counts()
    intervals = bradley_terry_intervals(totals, samples, sums.pairs, len(models), sums.confidence)
    result = {}
    for model, interval in zip(models, intervals):
        entry = _interval(interval, digits=1)
        result[model] = {"rating": entry["value"], "ci_low": entry["ci_low"], "ci_high": entry["ci_high"]}
    return result


def _corrections(submitted: pd.DataFrame, rows: pd.DataFrame, models: list[str]) -> dict:
    """Tallies of "which response to correct" over submitted responses (one per record and annotator)."""
    answers = rows[rows["status"] == "submitted"].drop_duplicates(["record_id", "annotator"])
    tally = answers["to_correct"].value_counts()
    return {
        "to_correct": {option: int(tally.get(option, 0)) for option in [*models, "combination", "neither"]},
        "corrected_responses": int(answers["corrected_response"].notna().sum()),
    }


def _agreement(submitted: pd.DataFrame) -> dict:
    """Ordinal Krippendorff's alpha per rating question (display position), and over all of them."""
    result = {}
    if submitted.empty:
        return {"all": {"alpha": None, "records": 0}}
    for position in sorted(submitted["position"].unique()):
        at = submitted[submitted["position"] == position]
        result[f"score_response_{position}"] = _alpha(at, ["record_id"])
    result["all"] = _alpha(submitted, ["record_id", "position"])
    return result


def _alpha(rows: pd.DataFrame, unit: list[str]) -> dict:
    table = rows.pivot_table(index="annotator", columns=unit, values="score", aggfunc="first")
    multi = table.notna().sum(axis=0) >= 2
    shared = table.loc[:, multi]
    records = int(shared.columns.get_level_values(0).nunique()) if shared.shape[1] else 0
    alpha = ordinal_alpha(shared.to_numpy(dtype=float), SCALE)
    return {"alpha": None if alpha is None else round(alpha, 4), "records": records}


def _annotators(submitted: pd.DataFrame) -> dict:
    result = {}
    for annotator, rows in submitted.groupby("annotator", sort=True):
        result[str(annotator)] = {
            "records": int(rows["record_id"].nunique()),
            "mean_score": round(float(rows["score"].mean()), 4),
        }
    return result


def _positions(submitted: pd.DataFrame) -> dict:
    return {
        str(int(position)): {"mean_score": round(float(rows["score"].mean()), 4), "scores": len(rows)}
        for position, rows in submitted.groupby("position", sort=True)
    }


def _judge(judgments: pa.Table, scores: pd.DataFrame, models: list[str], pairwise: pa.Table | None) -> dict:
    """How well the judge's scores track the humans': Spearman and quadratic-weighted kappa over (task, model)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    judged = judgments.to_pandas()
    judged = judged[judged["score"].notna()]
    both = judged.merge(scores, on=["task_id", "model"], suffixes=("_judge", "_human"))
    result: dict = {
        "pairs": len(both),
        "spearman": None,
        "kappa_quadratic": None,
        "models": {m: {"mean": _mean(judged.loc[judged["model"] == m, "score"])} for m in models},
    }
    if len(both) >= 2 and both["score_judge"].nunique() > 1 and both["score_human"].nunique() > 1:
        result["spearman"] = float(spearmanr(both["score_judge"], both["score_human"]).statistic)
        human = np.floor(both["score_human"].to_numpy() + 0.5).astype(int)
        result["kappa_quadratic"] = float(
            cohen_kappa_score(both["score_judge"].astype(int), human, weights="quadratic", labels=list(SCALE))
        )
    if pairwise is not None:
        result["pairwise"] = _judge_pairwise(pairwise.to_pandas())
    return result


def _judge_pairwise(rows: pd.DataFrame) -> dict:
    """Per pair: how often the judge preferred each side (both orders agreeing), and how often its two orders
    agreed at all (a judge that always picks the first answer agrees never)."""
    result = {}
    for (a, b), group in rows.groupby(["model_a", "model_b"], sort=False):
        usable = group[group["verdict"].notna()]
        n = len(usable)
        consistent = int((usable["a_first"] == usable["b_first"]).sum())
        result[f"{a}_vs_{b}"] = {
            "pairs": n,
            "win": round((usable["verdict"] == a).sum() / n, 4) if n else None,
            "tie": round((usable["verdict"] == "tie").sum() / n, 4) if n else None,
            "loss": round((usable["verdict"] == b).sum() / n, 4) if n else None,
            "consistent": round(consistent / n, 4) if n else None,
        }
    return result


def _execution(executions: pa.Table, scores: pd.DataFrame, models: list[str]) -> dict:
    """Pass rate per model, and how passing relates to the human score (point-biserial correlation)."""
    from scipy.stats import pointbiserialr

    runs = executions.to_pandas()
    runs["passed"] = runs["status"] == "pass"
    result: dict = {
        "models": {
            m: {"pass_rate": _mean(runs.loc[runs["model"] == m, "passed"]), "runs": int((runs["model"] == m).sum())}
            for m in models
        }
    }
    both = runs.merge(scores, on=["task_id", "model"])
    result["pairs"] = len(both)
    result["correlation_with_human"] = None
    if len(both) >= 2 and both["passed"].nunique() > 1 and both["score"].nunique() > 1:
        result["correlation_with_human"] = float(pointbiserialr(both["passed"], both["score"]).statistic)
    return result


def _mean(values: pd.Series) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def json_safe(value):
    """NaN and infinities become null (JSON has neither), numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
