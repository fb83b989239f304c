"""The boundary of the confidence sequences behind "decided" after every annotation round (round_sequence.py uses
it): against a numeric integration of the mixture martingale, and its tuning to the planned tasks. The sequence's
behaviour on simulated studies is tested in test_round_sequence.py.
"""

from __future__ import annotations

import math

import pytest
from scipy.integrate import quad
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from llm_feedback.confidence_sequence import decided, mixture_rho, radius
from llm_feedback.stats import Interval

# the boundary


@pytest.mark.parametrize(("tasks", "planned", "confidence"), [(20, 500, 0.95), (137, 100, 0.95), (2000, 300, 0.99)])
def test_the_radius_is_where_the_mixture_martingale_reaches_one_over_alpha(tasks, planned, confidence) -> None:
    """For standardised values the mixture over lambda ~ N(0, rho^2) of exp(lambda S - lambda^2 n / 2) is a
    nonnegative martingale of mean 1, so by Ville's inequality it passes 1/alpha at some n with chance at most alpha;
    the sequence's edge is where it equals 1/alpha."""
    sd = 1.7
    rho = mixture_rho(planned_tasks=planned, confidence=confidence)
    edge = tasks * float(radius(tasks=tasks, sd=sd, confidence=confidence, planned_tasks=planned)) / sd
    mixture, _ = quad(lambda lam: math.exp(lam * edge - lam**2 * tasks / 2) * norm.pdf(lam, scale=rho), -10, 10)
    assert mixture == pytest.approx(1 / (1 - confidence), rel=1e-6)


def test_the_sequence_is_narrowest_at_the_planned_tasks() -> None:
    """The tuning is Howard et al.'s closed-form approximation of the best rho: within 0.01% of the narrowest."""
    best = minimize_scalar(
        lambda log_planned: float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=math.exp(log_planned))),
        bounds=(0, 12),
        method="bounded",
    )
    assert math.exp(best.x) == pytest.approx(300, rel=0.05)
    assert float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=300)) / best.fun < 1.0001
    off = [float(radius(tasks=300, sd=1, confidence=0.95, planned_tasks=p)) for p in (75, 1200)]
    assert max(off) / best.fun < 1.08, "misjudging the tasks by a factor of 4 costs little width"


def test_decided_means_the_interval_excludes_zero() -> None:
    assert decided(Interval(0.4, 0.1, 0.7)) and decided(Interval(-0.4, -0.7, -0.1))
    assert not decided(Interval(0.4, 0.0, 0.7)) and not decided(Interval(0.1, -0.2, 0.4))
    assert not decided(Interval(0.4, None, None))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mixture_rho(confidence=1.0, planned_tasks=100), "confidence: 1.0"),
        (lambda: radius(tasks=10, sd=1.0, confidence=0.95, planned_tasks=0), "planned_tasks: 0"),
    ],
)
def test_bad_input_names_the_parameter(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
