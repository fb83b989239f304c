"""analyze: annotation rows -> the verdict (which model wins, how sure we are), what biases the scores, and whether
annotators (and a judge) agree.

Only submitted scores of answers that are still current count (a score given to text that generate has since
replaced is stale; an answer as written and as annotators see it, code fences normalised, are the same answer).
Several annotators of one task are aggregated per `analyze.aggregate`. The verdict rests on the complete cases:
tasks where every compared model's current answer has a current score, so no model is judged on a selected subset
of tasks. Tasks are the unit of resampling for every interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from llm_feedback.annotation.dataset_settings import TIE
from llm_feedback.annotation.values import DEFAULT_SCALE, OTHER_OPTIONS, STATUSES, status_problem
from llm_feedback.annotator_agreement import Agreement, annotator_agreement
from llm_feedback.artifacts import SCORES, text_sha
from llm_feedback.effects import Effects, estimate_effects
from llm_feedback.errors import ConfigError
from llm_feedback.judge_assisted import judge_assisted
from llm_feedback.model_comparison import ModelComparison, compare_models
from llm_feedback.params import AnalyzeParams
from llm_feedback.preferences import preference_metrics
from llm_feedback.presentation import normalise
from llm_feedback.stats import Interval, ordinal_alpha
from llm_feedback.style import style_features
from llm_feedback.verdict import Comparison, verdict_line


@dataclass(frozen=True)
class Analysis:
    metrics: dict
    scores: pd.DataFrame  # task_id, model, score (aggregated), n (scores behind it)
    submitted: pd.DataFrame  # current submitted rows: task_id, record_id, annotator, model, position, score, comments
    models: list[str]
    left_out: LeftOut
    scale: range = DEFAULT_SCALE  # the rubric's: what a score may be

    def ranking(self) -> list[tuple[str, dict]]:
        """Models with a mean score, best first."""
        scored = [(m, v) for m, v in self.metrics["models"].items() if v["mean"] is not None]
        return sorted(scored, key=lambda mv: -mv[1]["mean"])

    def scores_table(self) -> pa.Table:
        """The per-task scores as the scores artifact: export builds training data from exactly these."""
        return pa.Table.from_pandas(self.scores, schema=SCORES.schema, preserve_index=False)

    def caveats(self) -> list[str]:
        """What the reader of the verdict must know: tasks it leaves out and why, annotators who look random."""
        counts = self.metrics["counts"]
        parts = []
        incomplete = counts["incomplete_tasks"]
        if incomplete["stale"]:
            parts.append(
                f"{incomplete['stale']} tasks left out: an answer changed after it was rated (push with "
                "annotation.on_annotated_change: new_record shows the new answers, marked answers_changed, to re-rate)"
            )
        if incomplete["unscored"]:
            parts.append(f"{incomplete['unscored']} tasks left out: not every compared model's answer is scored yet")
        flagged = [f"{a} ({v['flagged']})" for a, v in self.metrics["annotators"].items() if v["flagged"]]
        if flagged:
            parts.append(
                f"annotators who look random or adversarial: {', '.join(flagged)} (see the report; "
                "analyze.exclude_annotators leaves them out)"
            )
        if counts["excluded_annotators"]:
            parts.append(f"left out by analyze.exclude_annotators: {', '.join(counts['excluded_annotators'])}")
        left_out = self.left_out.line()
        return [*parts, left_out] if left_out else parts

    def line(self) -> str:
        counts = self.metrics["counts"]
        scored = f"{counts['scored_tasks']} of {counts['tasks']} tasks scored"
        return "; ".join([self.metrics["verdict"], scored, *self.caveats()])


def aggregate_scores(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    """One score per (task, model) from its annotators: mean, median, or the most frequent score, a tie between
    several going to the median of all the scores (taking the lower, as a plain mode does, would pull every model
    down with two or three noisy raters)."""
    if rows.empty:
        return pd.DataFrame({"task_id": [], "model": [], "score": [], "n": []})
    groups = rows.groupby(["task_id", "model"], sort=True)["score"]
    counts = groups.size().rename("n")
    if how == "majority":
        tally = rows.groupby(["task_id", "model", "score"]).size().rename("votes").reset_index()
        top = tally["votes"] == tally.groupby(["task_id", "model"])["votes"].transform("max")
        modes = tally[top].groupby(["task_id", "model"])["score"]
        score = modes.first().where(modes.size() == 1, groups.median()).astype(float)
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
    chances: dict[str, tuple[int, list[float]]] | None = None,
    scale: range = DEFAULT_SCALE,
) -> Analysis:
    """`records`: how many records the dataset holds (the push receipt's count); the optional tables are the judge's
    and execute's artifacts, None when those stages are off; `chances`: the receipt's, each task's round and its
    chance of being published by that round and each since, when records were published in rounds; `scale`: the
    rubric's (values.rating_scale)."""
    rows, left_out = usable_annotations(annotations.to_pandas(), scale=scale)
    rows, excluded = without_annotators(rows, params.exclude_annotators)
    models = list(compare)
    submitted, stale = current_scores(rows, generations)
    scores = aggregate_scores(submitted, params.aggregate)
    complete = complete_cases(scores, models)
    compared = submitted[submitted["model"].isin(models) & submitted["task_id"].isin(complete.index)]
    comparison = compare_models(
        complete.to_numpy(dtype=float), models, params=params, style=_style(generations, complete.index, models)
    )
    comparison, earlier = _with_earlier_ratings(comparison, scores, stale, models, params)
    effects = estimate_effects(compared, confidence=params.confidence)
    agreement = annotator_agreement(submitted, confidence=params.confidence)
    means = {m: interval.estimate for m, interval in zip(models, comparison.means)}
    metrics = {
        "verdict": verdict_line(
            [p.comparison for p in comparison.pairs],
            means,
            confidence=params.confidence,
            min_difference=params.min_difference,
        ),
        "counts": {
            **_counts(rows, generations, records, scores, len(stale)),
            "complete_tasks": len(complete),
            "incomplete_tasks": _incomplete(scores, complete.index, stale),
            "excluded_annotators": excluded,
            **left_out.counts(),
        },
        "models": _model_means(comparison, compared, effects),
        "pairwise": _pairwise(comparison, earlier),
        "bradley_terry": _ratings(comparison.bradley_terry, models),
        "bradley_terry_style_controlled": _ratings(comparison.bradley_terry_style, models),
        "corrections": _corrections(submitted, rows, models),
        "agreement": _agreement(submitted, scale),
        "annotators": _annotators(submitted, effects, agreement),
        "position": _positions(compared, effects),
        "judge": _judge(judgments, scores, models, judge_pairwise, complete, params, chances or {}, scale)
        if judgments is not None
        else None,
        "execution": _execution(executions, scores, models) if executions is not None else None,
        "preference": preference_metrics(
            submitted, models, confidence=params.confidence, resamples=params.bootstrap, seed=params.seed
        ),
    }
    return Analysis(json_safe(metrics), scores, submitted, models, left_out, scale)


def without_annotators(rows: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows of everyone but the annotators `analyze.exclude_annotators` names; a name with no responses is a typo."""
    unknown = sorted(set(names) - set(rows["annotator"]))
    if unknown and not rows.empty:
        known = ", ".join(sorted(set(rows["annotator"])))
        raise ConfigError(f"analyze.exclude_annotators: no responses by {', '.join(unknown)} (annotators: {known})")
    return rows[~rows["annotator"].isin(names)], sorted(set(names))


def complete_cases(scores: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """(tasks, models) scores of the tasks every compared model has a score for, sorted by task."""
    if scores.empty:
        return pd.DataFrame(columns=models, dtype=float)
    wide = scores[scores["model"].isin(models)].pivot(index="task_id", columns="model", values="score")
    return wide.reindex(columns=models).dropna().sort_index()


def _with_earlier_ratings(
    comparison: ModelComparison, scores: pd.DataFrame, stale: pd.DataFrame, models: list[str], params: AnalyzeParams
) -> tuple[ModelComparison, dict[str, Comparison]]:
    """The verdict is not decided while it depends on answers that changed after they were rated.

    Leaving those tasks out keeps a selected sample when what got regenerated depended on how it was rated (say,
    a model's lowest-rated answers); counting their earlier ratings instead assumes the new answers are like the
    old. A pair is decided only when both readings decide it the same way, until the new answers are rated."""
    if stale.empty:
        return comparison, {}
    earlier = aggregate_scores(stale, params.aggregate)
    keys = ["task_id", "model"]
    earlier = earlier[~earlier.set_index(keys).index.isin(scores.set_index(keys).index)]
    widened = complete_cases(pd.concat([scores, earlier], ignore_index=True), models)
    if len(widened) == comparison.tasks:
        return comparison, {}
    again = compare_models(widened.to_numpy(dtype=float), models, params=params)
    waiting = len(widened) - comparison.tasks
    pairs, readings = [], {}
    for pair, other in zip(comparison.pairs, again.pairs):
        c, o = pair.comparison, other.comparison
        readings[f"{c.first}_vs_{c.second}"] = o
        agree = o.decided and (o.difference.estimate > 0) == (c.difference.estimate > 0)
        if c.decided and not agree:
            held = (
                f"held back: {waiting} tasks wait for re-rating, and with their earlier ratings the difference is "
                f"{o.difference.estimate:+.2f} ({_span(o.difference)})"
            )
            pair = replace(pair, comparison=replace(c, decided=False, held_back=held))
        pairs.append(pair)
    return replace(comparison, pairs=pairs), readings


def _span(interval: Interval) -> str:
    return "no interval" if interval.low is None else f"{interval.low:+.2f} to {interval.high:+.2f}"


def _incomplete(scores: pd.DataFrame, complete: pd.Index, stale: pd.DataFrame) -> dict:
    """Tasks with some scores that the verdict leaves out: because a rated answer changed since (stale), or because
    some compared answer has no score yet."""
    scored = (set(scores["task_id"]) if not scores.empty else set()) | set(stale["task_id"])
    left_out = scored - set(complete)
    stale_tasks = left_out & set(stale["task_id"])
    return {"stale": len(stale_tasks), "unscored": len(left_out - stale_tasks)}


def _style(generations: pa.Table, tasks: pd.Index, models: list[str]) -> np.ndarray:
    """(tasks, models, features) style features of the answers on the complete cases, in the matrix's order."""
    frame = generations.select(["task_id", "model", "response"]).to_pandas()
    frame = frame[frame["model"].isin(models) & frame["task_id"].isin(tasks)].drop_duplicates(["task_id", "model"])
    features = style_features(frame["response"]).set_axis(pd.MultiIndex.from_frame(frame[["task_id", "model"]]))
    wanted = pd.MultiIndex.from_product([tasks, models], names=["task_id", "model"])
    return features.reindex(wanted).fillna(0.0).to_numpy().reshape(len(tasks), len(models), features.shape[1])


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


def usable_annotations(rows: pd.DataFrame, *, scale: range = DEFAULT_SCALE) -> tuple[pd.DataFrame, LeftOut]:
    """The annotation rows that may count. A response (one annotator on one record) with any value outside the
    dataset's settings is left out whole: a score off the rating scale, an unknown status, a `to_correct` that is none
    of the record's models nor combination or neither, or a problem pull recorded. An annotator answering one record
    twice counts once, with the latest answer."""
    response = ["record_id", "annotator"]
    shown = rows[response + ["model"]].rename(columns={"model": "to_correct"}).drop_duplicates()
    label = rows[response + ["to_correct"]].merge(shown, how="left", on=response + ["to_correct"], indicator=True)
    preferred = rows[response + ["preferred"]].merge(
        shown.rename(columns={"to_correct": "preferred"}), how="left", on=response + ["preferred"], indicator=True
    )
    checks = {
        "problem": rows["problem"].notna().to_numpy(),
        "status": (~rows["status"].isin(STATUSES)).to_numpy(),
        "score": (rows["score"].notna() & ~rows["score"].isin(list(scale))).to_numpy(),
        "to_correct": (rows["to_correct"].notna() & ~rows["to_correct"].isin(OTHER_OPTIONS)).to_numpy()
        & (label["_merge"] == "left_only").to_numpy(),
        "preferred": (rows["preferred"].notna() & (rows["preferred"] != TIE)).to_numpy()
        & (preferred["_merge"] == "left_only").to_numpy(),
    }
    bad = np.logical_or.reduce(list(checks.values()))
    bad_responses = rows[bad].drop_duplicates(response).sort_values(response)
    first = None
    if len(bad_responses):
        at = rows.index.get_loc(bad_responses.index[0])
        row = rows.iloc[at]
        failed = next(name for name, found in checks.items() if found[at])
        first = f"record {row['record_id']} by {row['annotator']}: {_why(row, failed, scale)}"
    keep = ~rows.set_index(response).index.isin(bad_responses.set_index(response).index)
    rows = rows[keep]
    copies = rows.groupby(response + ["position"]).size() - 1
    duplicates = int(copies.groupby(level=response).max().sum()) if len(copies) else 0
    latest = rows.sort_values("updated_at", kind="stable").drop_duplicates(response + ["position"], keep="last")
    return latest.sort_index(), LeftOut(len(bad_responses), duplicates, first)


def _why(row: pd.Series, check: str, scale: range) -> str:
    if check == "problem":
        return row["problem"]
    if check == "status":
        return status_problem(row["status"])
    if check == "score":
        return f"score {int(row['score'])} for model {row['model']} is not on the {scale.start}-{scale.stop - 1} scale"
    if check == "preferred":
        return f"preferred {row['preferred']!r} is none of the record's models nor a tie"
    return f"to_correct {row['to_correct']!r} is none of the record's models, combination or neither"


def current_scores(rows: pd.DataFrame, generations: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Submitted scores of answers generate still holds; and the stale ones, given to text since replaced."""
    submitted = rows[(rows["status"] == "submitted") & rows["score"].notna()]
    submitted = submitted.merge(_current_shas(generations), on=["task_id", "model"], how="left")
    is_current = (submitted["response_sha"] == submitted["current_sha"]).to_numpy(dtype=bool, copy=True)
    is_current[~is_current] = _rated_as_shown(submitted[~is_current], generations)
    stale = submitted[~is_current].drop(columns="current_sha")
    submitted = submitted[is_current].drop(columns="current_sha")
    submitted["score"] = submitted["score"].astype(float)
    return submitted, stale


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


def _rated_as_shown(rows: pd.DataFrame, generations: pa.Table) -> np.ndarray:
    """Of scores whose text is not the answer generate holds, the ones given to that answer as annotators see it:
    push shows each answer with its code fences normalised (`presentation.normalise`), and pull fingerprints the
    text on the server, so such a score is of the current answer, its words unchanged. (A record pushed before
    answers were normalised holds the text as written, which the fingerprint of the answer itself matches.)"""
    if rows.empty:
        return np.zeros(0, dtype=bool)
    wanted = set(zip(rows["task_id"], rows["model"]))
    columns = (generations.column(c).to_pylist() for c in ("task_id", "model", "response"))
    shown = {
        (task_id, model): text_sha(normalise(response))
        for task_id, model, response in zip(*columns)
        if response is not None and (task_id, model) in wanted
    }
    return np.array(
        [shown.get(key) == sha for key, sha in zip(zip(rows["task_id"], rows["model"]), rows["response_sha"])],
        dtype=bool,
    )


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


def _model_means(comparison: ModelComparison, compared: pd.DataFrame, effects: Effects) -> dict:
    """Each model's mean on the complete cases (BCa interval), also as if shown equally often in every position."""
    n_scores = compared.groupby("model").size()
    result = {}
    for model, interval in zip(comparison.models, comparison.means):
        mean = _interval(interval)
        shift = effects.position_shift.get(model)
        corrected = None if mean["value"] is None or shift is None else round(interval.estimate - shift, 4)
        result[model] = {
            "mean": mean["value"],
            "ci_low": mean["ci_low"],
            "ci_high": mean["ci_high"],
            "position_corrected": corrected,
            "tasks": comparison.tasks,
            "scores": int(n_scores.get(model, 0)),
        }
    return result


def _pairwise(comparison: ModelComparison, earlier: dict[str, Comparison]) -> dict:
    """Per pair (first minus second, in compare order): the difference, its test, and the win/tie/loss rates; and
    the same difference counting the earlier ratings of answers that changed since, when there are any."""
    result = {}
    for pair in comparison.pairs:
        c = pair.comparison
        difference = _interval(c.difference)
        entry: dict = {
            "difference": difference["value"],
            "ci_low": difference["ci_low"],
            "ci_high": difference["ci_high"],
            "p_value": None if c.p_value is None else round(c.p_value, 6),
            "p_holm": None if c.p_holm is None else round(c.p_holm, 6),
            "decided": c.decided,
            "tasks": c.tasks,
            "sd": None if pair.sd is None else round(pair.sd, 4),
            "tasks_for_power": c.tasks_for_power,
            "held_back": c.held_back,
        }
        for name, rate in pair.rates.items():
            interval = _interval(rate)
            entry[name], entry[f"{name}_ci_low"], entry[f"{name}_ci_high"] = (
                interval["value"],
                interval["ci_low"],
                interval["ci_high"],
            )
        styled = _interval(pair.style_controlled)
        entry["style_controlled"] = {
            "difference": styled["value"],
            "ci_low": styled["ci_low"],
            "ci_high": styled["ci_high"],
        }
        key = f"{c.first}_vs_{c.second}"
        if key in earlier:
            o = earlier[key]
            widened = _interval(o.difference)
            entry["with_earlier_ratings"] = {
                "difference": widened["value"],
                "ci_low": widened["ci_low"],
                "ci_high": widened["ci_high"],
                "p_holm": None if o.p_holm is None else round(o.p_holm, 6),
                "tasks": o.tasks,
            }
        result[key] = entry
    return result


def _ratings(intervals: list[Interval] | None, models: list[str]) -> dict | None:
    if intervals is None:
        return None
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


def _agreement(submitted: pd.DataFrame, scale: range) -> dict:
    """Ordinal Krippendorff's alpha per rating question (display position), and over all of them."""
    result = {}
    if submitted.empty:
        return {"all": {"alpha": None, "records": 0}}
    for position in sorted(submitted["position"].unique()):
        at = submitted[submitted["position"] == position]
        result[f"score_response_{position}"] = _alpha(at, ["record_id"], scale)
    result["all"] = _alpha(submitted, ["record_id", "position"], scale)
    return result


def _alpha(rows: pd.DataFrame, unit: list[str], scale: range) -> dict:
    table = rows.pivot_table(index="annotator", columns=unit, values="score", aggfunc="first")
    multi = table.notna().sum(axis=0) >= 2
    shared = table.loc[:, multi]
    records = int(shared.columns.get_level_values(0).nunique()) if shared.shape[1] else 0
    alpha = ordinal_alpha(shared.to_numpy(dtype=float), scale)
    return {"alpha": None if alpha is None else round(alpha, 4), "records": records}


def _annotators(submitted: pd.DataFrame, effects: Effects, agreement: dict[str, Agreement]) -> dict:
    """Per annotator: how much they score, their leniency (offset from the average annotator on the same tasks,
    models and positions) and how well they agree with the others."""
    result = {}
    for annotator, rows in submitted.groupby("annotator", sort=True):
        name = str(annotator)
        leniency = _interval(effects.leniency.get(name, Interval(None, None, None)))
        agrees = agreement.get(name, Agreement(0, None, None, None, None))
        result[name] = {
            "records": int(rows["record_id"].nunique()),
            "mean_score": round(float(rows["score"].mean()), 4),
            "leniency": leniency["value"],
            "leniency_ci_low": leniency["ci_low"],
            "leniency_ci_high": leniency["ci_high"],
            "shared_answers": agrees.shared,
            "agreement": None if agrees.correlation is None else round(agrees.correlation, 4),
            "agreement_ci_low": None if agrees.ci_low is None else round(agrees.ci_low, 4),
            "agreement_ci_high": None if agrees.ci_high is None else round(agrees.ci_high, 4),
            "flagged": agrees.flagged,
        }
    return result


def _positions(compared: pd.DataFrame, effects: Effects) -> dict:
    """Each display position's effect on the score relative to position 1, estimated within tasks, models and
    annotators; and the raw mean score by position (confounded with which model was shown there)."""
    return {
        "effect": {str(p): _interval(interval) for p, interval in effects.position.items()},
        "mean_score": {
            str(int(position)): {"mean_score": round(float(rows["score"].mean()), 4), "scores": len(rows)}
            for position, rows in compared.groupby("position", sort=True)
        },
    }


def _judge(
    judgments: pa.Table,
    scores: pd.DataFrame,
    models: list[str],
    pairwise: pa.Table | None,
    complete: pd.DataFrame,
    params: AnalyzeParams,
    chances: dict[str, tuple[int, list[float]]],
    scale: range,
) -> dict:
    """How well the judge's scores track the humans' (Spearman and quadratic-weighted kappa over (task, model)), and
    the verdict's estimates with its help (prediction-powered, beside the humans alone)."""
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
            cohen_kappa_score(both["score_judge"].astype(int), human, weights="quadratic", labels=list(scale))
        )
    if pairwise is not None:
        result["pairwise"] = _judge_pairwise(pairwise.to_pandas())
    result["assisted"] = judge_assisted(
        humans=complete, judgments=judgments, models=models, confidence=params.confidence, chances=chances
    )
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
