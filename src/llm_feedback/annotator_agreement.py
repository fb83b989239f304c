"""Which annotators agree with the others no better than chance (random clicking) or against them (adversarial).

Each annotator's scores are compared with the mean of the other annotators' scores on the same answers (same record,
same position) by Spearman's rank correlation, which ignores leniency: a harsh but careful annotator agrees well. An
annotator whose correlation is credibly below USEFUL (the upper end of its confidence interval, Fisher's z with the
Bonett-Wright variance for Spearman) looks random; one whose interval lies below zero looks adversarial. Asking for
credibly below, not "not credibly above", keeps noisy but honest annotators with few shared answers unflagged. The
worst annotator is set aside and the others compared again, so one random annotator does not drag the honest ones'
agreement down (with three annotators, two per task, every honest one shares half its answers with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import spearmanr

USEFUL = 0.3  # a rank correlation with the others below this carries little of what they see
MIN_SHARED = 20  # answers shared with others needed before an annotator is judged


@dataclass(frozen=True)
class Agreement:
    shared: int  # answers also scored by someone else
    correlation: float | None  # Spearman with the others' mean score on those answers
    ci_low: float | None
    ci_high: float | None
    flagged: str | None  # "random" or "adversarial" when the annotator looks it


def annotator_agreement(rows: pd.DataFrame, *, confidence: float) -> dict[str, Agreement]:
    """`rows`: submitted scores with record_id, position, annotator, score."""
    wide = rows.pivot_table(index=["record_id", "position"], columns="annotator", values="score", aggfunc="first")
    wide = wide.loc[wide.notna().sum(axis=1) >= 2]
    z = float(ndtri(1 - (1 - confidence) / 2))
    annotators = sorted(rows["annotator"].unique(), key=str)
    result: dict[str, Agreement] = {}
    set_aside: list[str] = []
    while True:
        kept = wide.drop(columns=set_aside)
        current = {a: _agreement(kept, a, z) for a in annotators if a not in set_aside}
        flagged = {a: g for a, g in current.items() if g.flagged}
        if not flagged or len(current) <= 2:  # two who disagree: nothing says which of them is wrong
            result.update(current)
            break
        worst = min(flagged, key=lambda a: flagged[a].ci_high)
        result[worst] = flagged[worst]
        set_aside.append(worst)
    return {str(a): result[a] for a in annotators}


def _agreement(wide: pd.DataFrame, annotator: str, z: float) -> Agreement:
    if annotator not in wide.columns:
        return Agreement(0, None, None, None, None)
    own = wide[annotator]
    others = wide.drop(columns=annotator)
    shared = own.notna() & others.notna().any(axis=1)
    n = int(shared.sum())
    if n < MIN_SHARED:
        return Agreement(n, None, None, None, None)
    x, y = own[shared].to_numpy(), others[shared].mean(axis=1).to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return Agreement(n, None, None, None, None)
    rho = float(spearmanr(x, y).statistic)
    spread = z * math.sqrt((1 + rho**2 / 2) / (n - 3))
    centre = math.atanh(min(max(rho, -0.999999), 0.999999))
    low, high = math.tanh(centre - spread), math.tanh(centre + spread)
    flagged = "adversarial" if high < 0 else "random" if high < USEFUL else None
    return Agreement(n, rho, low, high, flagged)
