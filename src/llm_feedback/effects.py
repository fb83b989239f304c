"""What moves a score besides the answer: its display position and its annotator, estimated together with the
models in one regression, so neither is confounded with which model happened to be shown where or rated by whom.

score = task + model + position + annotator + noise, with the task as a fixed effect (swept out by demeaning within
each task, which is exact for one fixed effect) and standard errors clustered by task, from statsmodels. Every
effect is then a within-task contrast: a position effect compares the same task's answers shown first and second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from llm_feedback.stats import Interval

MIN_ROWS = 10  # fewer scored answers than this tell nothing about positions or annotators


@dataclass(frozen=True)
class Effects:
    position: dict[int, Interval]  # each position's effect on the score, relative to position 1
    leniency: dict[str, Interval]  # each annotator's offset from the average annotator; None where not estimable
    position_shift: dict[str, float]  # per model: what its display positions added to its mean, beyond the average

    @classmethod
    def empty(cls) -> Effects:
        return cls({}, {}, {})


def estimate_effects(rows: pd.DataFrame, *, confidence: float) -> Effects:
    """`rows`: one submitted score per (record, annotator, model) with task_id, model, position, annotator, score."""
    if len(rows) < MIN_ROWS or rows["task_id"].nunique() < 2:
        return Effects.empty()
    import statsmodels.api as sm

    reference_annotator = _most_frequent(rows["annotator"])
    design = pd.concat(
        [
            _dummies(rows, "model", _most_frequent(rows["model"])),
            _dummies(rows, "position", rows["position"].min()),  # effects are measured against the first position
            _dummies(rows, "annotator", reference_annotator),
        ],
        axis=1,
    ).astype(float)
    tasks = rows["task_id"].to_numpy()
    within = design - design.groupby(tasks).transform("mean")
    score = rows["score"].to_numpy(dtype=float)
    score = score - pd.Series(score).groupby(tasks).transform("mean").to_numpy()
    identified = within.columns[_independent(within.to_numpy())]
    if len(identified) == 0:
        return Effects.empty()
    groups = pd.factorize(tasks)[0]
    fit = sm.OLS(score, within[identified].to_numpy()).fit(cov_type="cluster", cov_kwds={"groups": groups})
    coef = pd.Series(fit.params, index=identified)
    cov = pd.DataFrame(fit.cov_params(), index=identified, columns=identified)
    z = float(ndtri(1 - (1 - confidence) / 2))

    def contrast(weights: pd.Series) -> Interval:
        weights = weights.reindex(identified, fill_value=0.0)
        value = float(weights @ coef)
        sd = float(np.sqrt(max(weights @ cov @ weights, 0.0)))
        return Interval(value, value - z * sd, value + z * sd)

    positions = sorted(int(p) for p in rows["position"].unique())
    position = {positions[0]: Interval(0.0, 0.0, 0.0)}
    for p in positions[1:]:
        name = f"position={p}"
        position[p] = contrast(pd.Series({name: 1.0})) if name in coef else Interval(None, None, None)
    return Effects(
        position=position,
        leniency=_leniency(rows, identified, contrast, reference_annotator),
        position_shift=_position_shift(rows, position),
    )


def _independent(design: np.ndarray) -> list[int]:
    """Columns that are not combinations of earlier ones (a level seen only where it is confounded with others, e.g.
    an annotator who never shares a task, tells nothing within tasks), found on the small Gram matrix."""
    gram = design.T @ design
    kept: list[int] = []
    for column in range(gram.shape[0]):
        candidate = [*kept, column]
        block = gram[np.ix_(candidate, candidate)]
        if np.linalg.matrix_rank(block, tol=1e-9 * max(1.0, float(np.trace(block)))) == len(candidate):
            kept.append(column)
    return kept


def _most_frequent(values: pd.Series):
    """A reference level that shares tasks with the others: the most frequent (ties: the first by name)."""
    frequency = values.value_counts()
    return min(frequency.index[frequency == frequency.max()], key=str)


def _dummies(rows: pd.DataFrame, column: str, reference) -> pd.DataFrame:
    """Indicator columns for every level but `reference`, which the others are measured against."""
    values = rows[column].to_numpy()
    levels = sorted((level for level in rows[column].unique() if level != reference), key=str)
    return pd.DataFrame({f"{column}={level}": values == level for level in levels}, index=rows.index)


def _leniency(rows: pd.DataFrame, identified: pd.Index, contrast, reference) -> dict[str, Interval]:
    """Offsets from the average annotator (of those whose offset is estimable: they share tasks with others)."""
    annotators = sorted(rows["annotator"].unique(), key=str)
    names = {a: f"annotator={a}" for a in annotators}
    coded = [a for a in annotators if names[a] in identified]
    estimable = [reference, *coded]
    if len(estimable) < 2:
        return {str(a): Interval(None, None, None) for a in annotators}
    result = {}
    for a in annotators:
        if a not in estimable:
            result[str(a)] = Interval(None, None, None)
            continue
        weights = {names[b]: -1.0 / len(estimable) for b in coded}
        if a in coded:
            weights[names[a]] += 1.0
        result[str(a)] = contrast(pd.Series(weights, dtype=float))
    return result


def _position_shift(rows: pd.DataFrame, position: dict[int, Interval]) -> dict[str, float]:
    """What each model's display positions gave its scores beyond the average position: its mean minus this is its
    mean had every model been shown equally often in every position."""
    effect = pd.Series({p: (i.estimate if i.estimate is not None else 0.0) for p, i in position.items()})
    shift = rows["position"].map(effect).astype(float) - effect.mean()
    return {str(m): float(v) for m, v in shift.groupby(rows["model"]).mean().items()}
