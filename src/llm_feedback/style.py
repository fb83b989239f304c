"""Style control: would the verdict stand if the answers were equally long and equally formatted?

Each pair of answers is described by the differences of its style features (length, code blocks, Markdown headers,
list items, bold spans) and the comparison is refitted with them as covariates: the intercept of the paired
difference, and the model terms of Bradley-Terry (as Chatbot Arena's style control, with its normalised differences
(a - b) / (a + b)), are then what remains at equal style. A model that wins only because it writes more loses its
lead here.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.special import ndtri

from llm_feedback.stats import Interval

FEATURES = {
    "length": None,  # characters
    "code_blocks": re.compile(r"^\s*(```|~~~)", re.MULTILINE),  # fence lines, two a block
    "headers": re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE),
    "list_items": re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}
ELO = 400 / np.log(10)  # Bradley-Terry log-strength to Elo points


def style_features(responses: pd.Series) -> pd.DataFrame:
    """One row per response: its length and counts of code blocks, headers, list items and bold spans."""
    text = responses.fillna("")
    columns = {}
    for name, pattern in FEATURES.items():
        columns[name] = text.str.len() if pattern is None else text.str.count(pattern)
    frame = pd.DataFrame(columns, index=responses.index).astype(float)
    frame["code_blocks"] = np.floor(frame["code_blocks"] / 2)
    return frame


def normalised_differences(features_a: np.ndarray, features_b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) per feature, 0 where both are 0: 0 means equal style, whatever the scale of the feature."""
    total = features_a + features_b
    return np.divide(features_a - features_b, total, out=np.zeros_like(total), where=total > 0)


def scaled(differences: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """Style differences (tasks, features) divided by their spread (not centred: 0 must stay "equal style"),
    keeping only features that vary independently of the `fixed` columns (an intercept when None; one indicator
    per pair of models for Bradley-Terry): a feature that does not vary within a pair of models cannot be told
    apart from the models themselves, so it is not controlled."""
    fixed = np.ones((differences.shape[0], 1)) if fixed is None else fixed
    kept: list[np.ndarray] = []
    if differences.shape[0] == 0:
        return np.empty((0, 0))
    rank = np.linalg.matrix_rank(fixed)
    for column in differences.T:
        spread = np.sqrt(np.mean(column**2))
        if spread < 1e-12:
            continue
        candidate = np.column_stack([fixed, *kept, column / spread])
        if np.linalg.matrix_rank(candidate) > rank:
            kept.append(column / spread)
            rank += 1
    return np.column_stack(kept) if kept else np.empty((differences.shape[0], 0))


def style_controlled_difference(differences: np.ndarray, style: np.ndarray, *, confidence: float) -> Interval:
    """The mean per-task difference at equal style: the intercept of an OLS of the differences on the scaled style
    differences, with a heteroskedasticity-robust (HC3) interval."""
    n = differences.size
    if n < style.shape[1] + 3:
        return Interval(None, None, None)
    import statsmodels.api as sm

    fit = sm.OLS(differences, sm.add_constant(style, has_constant="add")).fit(cov_type="HC3")
    z = float(ndtri(1 - (1 - confidence) / 2))
    value, sd = float(fit.params[0]), float(fit.bse[0])
    if not np.isfinite(sd):
        return Interval(value, None, None)
    return Interval(value, value - z * sd, value + z * sd)


def style_controlled_ratings(
    outcomes: np.ndarray, pairs: list[tuple[int, int]], style: list[np.ndarray], *, models: int, confidence: float
) -> list[Interval]:
    """Bradley-Terry ratings (Elo scale, centred on 1000) at equal style, from per-task outcomes (tasks, pairs, 3)
    of win, tie and loss and each pair's (tasks, features) normalised style differences: a logistic regression of
    "the first model won" (a tie counts half) on model indicators and style differences, with sandwich errors."""
    import statsmodels.api as sm

    indicators, pair_of, differences, target = [], [], [], []
    for k, (i, j) in enumerate(pairs):
        played = outcomes[:, k].sum(axis=1) > 0
        rows = np.zeros((int(played.sum()), models))
        rows[:, i], rows[:, j] = 1.0, -1.0
        indicators.append(rows)
        pair_of.append(np.full(int(played.sum()), k))
        differences.append(style[k][played])
        target.append(outcomes[played, k, 0] + 0.5 * outcomes[played, k, 1])
    y = np.concatenate(target) if target else np.empty(0)
    if y.size <= models + 2:
        return [Interval(None, None, None)] * models
    centring = np.eye(models)[:, 1:] - 1.0 / models  # ratings sum to zero: drop one model's column, then centre
    within_pairs = np.eye(len(pairs))[np.concatenate(pair_of)]
    reduced = np.hstack([np.vstack(indicators)[:, 1:], scaled(np.vstack(differences), fixed=within_pairs)])
    try:
        fit = sm.GLM(y, reduced, family=sm.families.Binomial()).fit(cov_type="HC0")
    except (ValueError, np.linalg.LinAlgError):
        return [Interval(None, None, None)] * models
    coef, cov = fit.params[: models - 1], fit.cov_params()[: models - 1, : models - 1]
    z = float(ndtri(1 - (1 - confidence) / 2))
    result = []
    for m in range(models):
        weights = centring[m]
        value, sd = float(weights @ coef), float(np.sqrt(max(weights @ cov @ weights, 0.0)))
        if not (np.isfinite(value) and np.isfinite(sd)):
            result.append(Interval(None, None, None))
            continue
        result.append(Interval(1000 + ELO * value, 1000 + ELO * (value - z * sd), 1000 + ELO * (value + z * sd)))
    return result
