"""The boundary of the anytime-valid confidence sequences (round_sequence.py) for a pair's difference, so that
"decided" may be checked after every annotation round without raising the chance of a false decision.

A fixed-n interval looked at after each of 20 rounds excludes a true difference of 0 at some look far more often than
its nominal 5%; a confidence sequence covers the mean at every look at once, however many looks there are and
whenever one stops.

The method is the asymptotic confidence sequence of Waudby-Smith, Arnold, Wu, Howard and Ramdas ("Time-uniform
central limit theory and asymptotic confidence sequences", Annals of Statistics 2024) with Robbins' two-sided
Gaussian-mixture boundary: after n tasks of mean m and standard deviation s,

    m +- s * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha)),

where rho sets the tasks at which the sequence is narrowest (`planned_tasks`; the tuning of Howard, Ramdas, McAuliffe
and Sekhon 2021). It is chosen over a betting confidence sequence for values in [-7, 7] (Waudby-Smith and Ramdas
2023), which is exact at any n, because:
- it needs a finite variance, not known bounds, so it also serves prediction-powered terms, whose inverse-probability
  weights take them far outside the score range;
- at a look it depends on the data only through the estimate and its variance: the order of tasks within a round
  does not matter, the whole sequence can be recomputed from each task's round with no state kept between runs, and
  the same boundary serves any estimate whose errors over the looks behave as a Brownian motion's mean
  (round_sequence.py: weighted rounds, a judge's help);
- it is a closed form, O(1) per look, where betting needs a grid of candidate means updated task by task.
Its validity is asymptotic (the error rate tends to alpha as the first look grows), so it starts at MIN_TASKS; on
rounded scores with 20 looks of 20-50 tasks it decides falsely in about 1.3% of runs at 95% confidence (a t or BCa
interval looked at as often: about 25%), the Gaussian-mixture boundary's slack more than covering the gap.

No package is used: `confseq` (0.0.11, January 2023, no code change since) pins pybind11 2.6, which does not compile
against Python 3.11, and needs Boost headers; `expectation` requires Python >= 3.12 and brings plotly, matplotlib and
pandas. The boundary is checked in the tests against a numeric integration of the mixture martingale.
"""

from __future__ import annotations

import math

import numpy as np

from llm_feedback.stats import Interval

# Fewer tasks give no interval: the sd of a handful of rounded scores is too unstable for the asymptotic guarantee
# (looking after every task from the 2nd on, 13% of sequences exclude a true 0 at some look; from the 10th on, 2%).
MIN_TASKS = 10


def mixture_rho(*, planned_tasks: float, confidence: float) -> float:
    """The mixture's spread that makes the sequence narrowest (to within 0.01%) after `planned_tasks` tasks: rho^2 =
    (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / planned_tasks. Misjudging them by a factor of 4 either way widens
    the sequence at the true count by at most 8%."""
    check_settings(confidence=confidence, planned_tasks=planned_tasks)
    level = 2 * math.log(1 / (1 - confidence))
    return math.sqrt((level + math.log1p(level)) / planned_tasks)


def radius(*, tasks: np.ndarray | int, sd: np.ndarray | float, confidence: float, planned_tasks: float) -> np.ndarray:
    """The half-width of the sequence after `tasks` tasks whose values have standard deviation `sd` (elementwise)."""
    rho2 = mixture_rho(planned_tasks=planned_tasks, confidence=confidence) ** 2
    n = np.asarray(tasks, dtype=np.float64)
    spread = n * rho2 + 1
    return np.asarray(sd) * np.sqrt(2 * spread / (n**2 * rho2) * np.log(np.sqrt(spread) / (1 - confidence)))


def decided(interval: Interval) -> bool:
    """Whether the interval excludes 0."""
    return interval.low is not None and interval.high is not None and (interval.low > 0 or interval.high < 0)


def check_settings(*, confidence: float, planned_tasks: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence} is not between 0 and 1")
    if not planned_tasks >= 1:
        raise ValueError(f"planned_tasks: {planned_tasks} is not at least 1")
