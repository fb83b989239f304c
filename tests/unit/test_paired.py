"""The paired statistics behind the verdict, each against an independent computation (scipy, statsmodels) or a case
worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr
from scipy.stats import bootstrap, permutation_test
from scipy.stats import t as student_t
from statsmodels.stats.power import tt_solve_power
from statsmodels.stats.proportion import proportion_confint

from llm_feedback.paired import bca_mean_intervals, holm, sign_flip_tests, tasks_for_power, wilson
from llm_feedback.stats import bootstrap_sums


def test_bca_interval_matches_scipys_on_a_skewed_sample() -> None:
    x = np.random.default_rng(1).exponential(1.0, size=(40, 1))
    highs, lows = [], []
    for seed in range(4):
        totals, samples = bootstrap_sums(x, 20_000, seed)
        [interval] = bca_mean_intervals(x, totals, samples, confidence=0.95)
        lows.append(interval.low)
        highs.append(interval.high)
        assert interval.estimate == pytest.approx(x.mean())
    # the same BCa at the expanded level: the normal quantile of the level is sqrt(n / (n - 1)) t_{n-1}
    expanded = 1 - 2 * ndtr(np.sqrt(40 / 39) * student_t.ppf(0.025, 39))
    assert 0.955 < expanded < 0.96
    reference = [
        bootstrap(
            (x[:, 0],), np.mean, method="BCa", n_resamples=20_000, random_state=s, confidence_level=expanded
        ).confidence_interval
        for s in range(4)
    ]
    assert np.mean(lows) == pytest.approx(np.mean([r.low for r in reference]), abs=0.02)
    assert np.mean(highs) == pytest.approx(np.mean([r.high for r in reference]), abs=0.03)
    percentile_high = np.percentile(samples[:, 0] / 40, 100 * (1 - (1 - expanded) / 2))
    assert np.mean(highs) > percentile_high, "BCa moves the interval toward the long tail"


def test_too_few_tasks_give_no_interval_and_constant_ones_a_point() -> None:
    one = np.array([[3.0, 1.0]])
    totals, samples = bootstrap_sums(one, 200, 0)
    assert [(i.estimate, i.low, i.high) for i in bca_mean_intervals(one, totals, samples, confidence=0.95)] == [
        (3.0, None, None),
        (1.0, None, None),
    ]
    same = np.full((30, 1), 2.0)
    totals, samples = bootstrap_sums(same, 200, 0)
    [interval] = bca_mean_intervals(same, totals, samples, confidence=0.95)
    assert (interval.estimate, interval.low, interval.high) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("shift", [0.0, 0.4, 1.0])
def test_sign_flip_p_value_matches_scipys_exact_permutation_test(shift: float) -> None:
    d = np.round(np.random.default_rng(2).normal(shift, 1.0, 12) * 2) / 2  # half points, like two raters' means
    [test] = sign_flip_tests(d[:, None], resamples=50_000, seed=0)
    exact = permutation_test(
        (d,), lambda x, axis=-1: np.sum(x, axis=axis), vectorized=True, permutation_type="samples"
    ).pvalue  # 2**12 sign patterns: scipy enumerates them all
    assert test.statistic == pytest.approx(d.sum())
    assert test.p_value == pytest.approx(exact, abs=0.01)


def test_sign_flip_p_value_at_scale_and_without_any_difference() -> None:
    rng = np.random.default_rng(3)
    d = rng.integers(-3, 4, 50_000).astype(float)
    [test] = sign_flip_tests(d[:, None], resamples=10_000, seed=0)
    z = d.sum() / np.sqrt((d**2).sum())  # the permutation distribution is close to normal here
    from scipy.stats import norm

    assert test.p_value == pytest.approx(2 * norm.sf(abs(z)), abs=0.02)
    assert sign_flip_tests(np.zeros((10, 1)), resamples=100, seed=0)[0].p_value == 1.0


def test_holm_by_hand() -> None:
    # sorted: 0.01 * 3 = 0.03, max(0.03, 0.03 * 2) = 0.06, max(0.06, 0.04 * 1) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


@pytest.mark.parametrize(("k", "n"), [(30, 30), (0, 30), (1, 30), (13, 40), (0, 1)])
def test_wilson_matches_statsmodels_and_stays_open_at_the_boundary(k: int, n: int) -> None:
    interval = wilson(k, n, 0.95)
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert interval.estimate == k / n
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert interval.high - interval.low > 0.05, "never a point, even at 0 or n"
    if k == n == 30:
        assert interval.low <= 0.89
    assert wilson(0, 0, 0.95).estimate is None


def test_tasks_for_power_agrees_with_statsmodels_t_test_power() -> None:
    for sd, difference in [(2.12, 0.5), (1.0, 0.25), (3.0, 1.0)]:
        ours = tasks_for_power(sd, difference=difference, confidence=0.95)
        reference = tt_solve_power(effect_size=difference / sd, alpha=0.05, power=0.8, alternative="two-sided")
        assert abs(ours - reference) <= 3, (sd, difference, ours, reference)
    assert tasks_for_power(0.0, difference=0.5, confidence=0.95) is None
