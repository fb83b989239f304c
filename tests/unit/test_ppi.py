"""Prediction-powered inference (llm_feedback.ppi): power-tuned PPI++ is ppi_py's (the method's authors' package) to
rounding, the weighted (active) version is the humans' weighted mean with robust errors at lam = 0, and on simulated
studies with a known truth and a judge of known quality (`simulated_study.Judge`) the intervals cover, narrow as the
judge's per-task differences track the humans', and never widen with a useless judge.

Simulated rates come from a few hundred replicates, so each acceptance band is the target widened by the binomial
sampling error (`band`): a procedure on target passes with probability at least 99.8%. Seeds are fixed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import ppi_py
import pytest
import statsmodels.api as sm
from scipy.stats import binom, pearsonr

from llm_feedback.artifacts import JUDGMENTS
from llm_feedback.ppi import judge_human_correlations, ppi_mean
from llm_feedback.testing.simulated_study import (
    JUDGE_QUALITIES,
    JUDGED_PAIR,
    Judge,
    Simulated,
    per_task_scores,
    simulate,
)

SURE = 0.001  # the chance a procedure on target still falls outside a band, per side
TASKS = 400  # per replicate study; humans rate a quarter of them
REPLICATES = 400
BASE = dataclasses.replace(JUDGED_PAIR, tasks=TASKS)
# and one blind to every task and answer
JUDGES = {**JUDGE_QUALITIES, "useless": Judge(bias={"a": 0.6}, task_weight=0.0, answer_weight=0.0)}


def band(replicates: int, low: float, high: float) -> tuple[float, float]:
    """The shares of `replicates` runs consistent with a true rate in [low, high]."""
    return binom.ppf(SURE, replicates, low) / replicates, binom.isf(SURE, replicates, high) / replicates


@dataclasses.dataclass(frozen=True)
class Replicates:
    human: np.ndarray  # (replicates, tasks, models)
    judge: np.ndarray
    study: Simulated  # all replicates as one study: its truths, and the correlations over all of them

    @property
    def truth(self) -> float:
        return self.study.difference["a_vs_b"]


def replicates(judge: Judge, *, tasks: int = TASKS, count: int = REPLICATES, seed: int = 11) -> Replicates:
    """`count` independent studies of `tasks` tasks, drawn as one study of count x tasks (tasks are independent)."""
    study = simulate(dataclasses.replace(BASE, tasks=tasks * count, judge=judge), seed=seed)
    human, judged = per_task_scores(study)
    shape = (count, tasks, len(study.compare))
    return Replicates(human.reshape(shape), judged.reshape(shape), study)


def difference(matrix: np.ndarray) -> np.ndarray:
    return matrix[..., 0] - matrix[..., 1]


def width(low: float, high: float) -> float:
    return high - low


# --- against references ------------------------------------------------------------------------------------------


def sample(slope: float, *, tasks: int = 2000, labelled: int = 300, seed: int = 1):
    """Human values, and a judge whose values follow the latent quality with `slope` (0: unrelated; below 0:
    against the humans; small: a judge that compresses the scale)."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1, tasks)
    human = 3 + quality + rng.normal(0, 0.7, tasks)
    judge = 2.5 + slope * quality + rng.normal(0, 0.7 * abs(slope) + 0.1, tasks)
    chosen = np.zeros(tasks, dtype=bool)
    chosen[rng.choice(tasks, labelled, replace=False)] = True
    return human, judge, chosen


@pytest.mark.parametrize("slope", [1.0, 0.3, 0.0, -1.0], ids=["tracks", "compressed", "unrelated", "against"])
def test_power_tuned_ppi_is_ppi_py_s(slope: float) -> None:
    """ppi_py takes the unlabelled tasks apart and weighs them by its own lam, lam (N - n) / N here."""
    human, judge, chosen = sample(slope)
    y, f, rest = human[chosen], judge[chosen], judge[~chosen]
    result = ppi_mean(human=y, judge_labeled=f, judge_all=judge, confidence=0.9)
    low, high = ppi_py.ppi_mean_ci(y, f, rest, alpha=0.1)
    assert result.estimate == pytest.approx(ppi_py.ppi_mean_pointestimate(y, f, rest)[0], abs=1e-9)
    assert (result.low, result.high) == pytest.approx((low[0], high[0]), abs=1e-9)
    given = ppi_py.ppi_mean_ci(y, f, rest, alpha=0.1, lam=result.lam * rest.size / judge.size)
    assert (result.low, result.high) == pytest.approx((given[0][0], given[1][0]), abs=1e-9)
    classical = ppi_py.classical_mean_ci(y, alpha=0.1)
    assert (result.human.estimate, result.human.low, result.human.high) == pytest.approx(
        (y.mean(), classical[0], classical[1]), abs=1e-12
    )
    if slope == 1.0:
        assert 0 < result.lam < 1 and width(result.low, result.high) < 0.85 * width(result.human.low, result.human.high)
    if slope == 0.3:  # the judge's slope is above 1: lam stops where ppi_py's reaches 1
        assert result.lam == pytest.approx(judge.size / rest.size)
    if slope == -1.0:
        assert result.lam == 0.0


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
@pytest.mark.parametrize("judge", ["against", "constant"])
def test_with_lam_zero_it_is_the_humans_alone_exactly(weighted: bool, judge: str) -> None:
    human, scores, chosen = sample(-1.0)
    if judge == "constant":
        scores = np.full_like(scores, 5.0)
    probability = np.full(chosen.sum(), 0.15) if weighted else None
    result = ppi_mean(
        human=human[chosen],
        judge_labeled=scores[chosen],
        judge_all=scores,
        confidence=0.95,
        sampling_probability=probability,
    )
    assert result.lam == 0.0
    assert (result.estimate, result.low, result.high) == (result.human.estimate, result.human.low, result.human.high)
    assert result.effective_human_tasks == chosen.sum()


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_with_every_task_labelled_the_judge_adds_nothing(weighted: bool) -> None:
    human, judge, _ = sample(1.0, tasks=50, labelled=50)
    probability = np.ones(50) if weighted else None
    result = ppi_mean(
        human=human, judge_labeled=judge, judge_all=judge, confidence=0.95, sampling_probability=probability
    )
    assert result.estimate == pytest.approx(human.mean(), abs=1e-12)
    assert result.high - result.estimate == pytest.approx(1.959964 * human.std() / np.sqrt(50), rel=1e-6)
    assert result.effective_human_tasks == pytest.approx(50)


def test_weighted_humans_alone_are_the_weighted_mean_with_robust_errors() -> None:
    """statsmodels: weighted least squares on a constant, heteroscedasticity-robust (HC0) standard error."""
    human, judge, chosen = sample(1.0)
    probability = np.where(judge[chosen] > 2.5, 0.3, 0.08)
    y = human[chosen]
    fit = sm.WLS(y, np.ones((y.size, 1)), weights=1 / probability).fit(cov_type="HC0")
    low, high = fit.conf_int(alpha=0.05)[0]
    result = ppi_mean(
        human=y, judge_labeled=judge[chosen], judge_all=judge, confidence=0.95, sampling_probability=probability
    )
    assert (result.human.estimate, result.human.low, result.human.high) == pytest.approx(
        (fit.params[0], low, high), abs=1e-10
    )
    assert result.lam > 0 and result.effective_human_tasks > 1.2 * y.size


def test_equal_probabilities_give_ppi_plus_plus_written_the_other_way() -> None:
    """The weighted version sums each task's influence over all tasks; PPI++ adds two independent means. With equal
    probabilities they are the same estimator, their variances the same to order 1/n."""
    human, judge, chosen = sample(1.0, labelled=400)
    y, f = human[chosen], judge[chosen]
    uniform = ppi_mean(human=y, judge_labeled=f, judge_all=judge, confidence=0.95)
    weighted = ppi_mean(
        human=y, judge_labeled=f, judge_all=judge, confidence=0.95, sampling_probability=np.full(y.size, 0.2)
    )
    assert weighted.lam == pytest.approx(uniform.lam, rel=0.1), "each minimises its own estimate of the variance"
    assert weighted.estimate == pytest.approx(uniform.estimate, abs=0.01 * width(uniform.low, uniform.high))
    assert width(weighted.low, weighted.high) == pytest.approx(width(uniform.low, uniform.high), rel=0.005)
    assert weighted.human.estimate == pytest.approx(uniform.human.estimate, abs=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["uniform", "weighted"])
def test_the_judge_s_bias_costs_nothing_and_the_estimate_moves_with_the_scale(weighted: bool) -> None:
    human, judge, chosen = sample(1.0)
    probability = np.where(judge[chosen] > 2.5, 0.3, 0.08) if weighted else None

    def fit(y: np.ndarray, f: np.ndarray):
        return ppi_mean(
            human=y[chosen], judge_labeled=f[chosen], judge_all=f, confidence=0.95, sampling_probability=probability
        )

    base, lenient, shifted = fit(human, judge), fit(human, judge + 1.5), fit(human + 2.0, judge + 2.0)
    assert (lenient.estimate, lenient.low, lenient.high, lenient.lam) == pytest.approx(
        (base.estimate, base.low, base.high, base.lam), abs=1e-9
    )
    assert (shifted.estimate, shifted.low, shifted.high) == pytest.approx(
        (base.estimate + 2, base.low + 2, base.high + 2), abs=1e-9
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"human": np.ones(1), "judge_labeled": np.ones(1)}, "human: at least 2"),
        ({"judge_labeled": np.ones(4)}, "judge_labeled: 4 values for 3"),
        ({"judge_all": np.ones(2)}, "judge_all: 2 tasks"),
        ({"human": np.array([1.0, np.nan, 2.0])}, "human: 1 values are missing"),
        ({"judge_all": np.ones((5, 2))}, "judge_all: expected one value per task"),
        ({"sampling_probability": np.array([0.5, 0.0, 0.5])}, "sampling_probability: every probability"),
        ({"sampling_probability": np.array([0.5, 0.5])}, "sampling_probability: 2 values for 3"),
        ({"confidence": 1.0}, "confidence: 1.0"),
    ],
)
def test_bad_input_names_the_parameter(change: dict, message: str) -> None:
    args = {
        "human": np.array([1.0, 2.0, 3.0]),
        "judge_labeled": np.array([1.0, 2.0, 2.0]),
        "judge_all": np.arange(6.0),
        "confidence": 0.95,
    }
    with pytest.raises(ValueError, match=message):
        ppi_mean(**{**args, **change})


def test_correlations_per_answer_and_per_task_difference() -> None:
    rng = np.random.default_rng(3)
    task = rng.normal(0, 2, (500, 1))  # shared by both answers of a task: it cancels in their difference
    human = task + rng.normal(0, 1, (500, 3))
    judge = task + 0.5 * human + rng.normal(0, 1, (500, 3))
    result = judge_human_correlations(human=human, judge=judge)
    assert result.answers == pytest.approx(pearsonr(human.ravel(), judge.ravel()).statistic, abs=1e-12)
    assert set(result.differences) == {(0, 1), (0, 2), (1, 2)}
    d = pearsonr(human[:, 1] - human[:, 2], judge[:, 1] - judge[:, 2]).statistic
    assert result.differences[(1, 2)] == pytest.approx(d, abs=1e-12)
    assert all(r < result.answers - 0.2 for r in result.differences.values())
    constant = judge_human_correlations(human=human, judge=np.ones_like(judge))
    assert constant.answers is None and set(constant.differences.values()) == {None}


def test_the_simulated_judge_writes_the_judgments_artifact_and_changes_no_human_score() -> None:
    population = dataclasses.replace(BASE, tasks=20_000)
    plain = simulate(population)
    judged = simulate(dataclasses.replace(population, judge=JUDGES["0.8"]))
    assert plain.judgments is None
    assert judged.annotations.equals(plain.annotations) and judged.generations.equals(plain.generations)
    assert judged.means == plain.means and judged.difference == plain.difference
    table = JUDGMENTS.validate(judged.judgments, "judgments")
    rows = table.to_pandas()
    assert len(rows) == 20_000 * 2 and not rows.duplicated(["task_id", "model"]).any()
    assert set(rows["judge"]) == {"judge"} and rows["error"].isna().all() and rows["score"].between(0, 7).all()
    means = rows.groupby("model")["score"].mean()
    se = rows.groupby("model")["score"].std() / np.sqrt(20_000)
    for model, bias in {"a": 0.6, "b": -0.2}.items():  # mid-scale, so rounding and clipping barely move the mean
        assert abs(means[model] - (BASE.means[model] + bias)) < 4 * se[model] + 0.02, model


# --- simulated studies with a known truth --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[Replicates, pd.DataFrame]]:
    """Per judge: the replicates, and per replicate the PPI and human-only fits of the pair's difference on the same
    random quarter of the tasks."""
    rng = np.random.default_rng(5)
    result = {}
    for quality, judge in JUDGES.items():
        study = replicates(judge)
        fits = []
        for human, scores in zip(difference(study.human), difference(study.judge)):
            chosen = rng.choice(TASKS, TASKS // 4, replace=False)
            fit = ppi_mean(human=human[chosen], judge_labeled=scores[chosen], judge_all=scores, confidence=0.95)
            fits.append(
                {
                    "covered": fit.low <= study.truth <= fit.high,
                    "human_covered": fit.human.low <= study.truth <= fit.human.high,
                    "ratio": width(fit.low, fit.high) / width(fit.human.low, fit.human.high),
                    "effective": fit.effective_human_tasks / (TASKS // 4),
                    "lam": fit.lam,
                }
            )
        result[quality] = (study, pd.DataFrame(fits))
    return result


def correlations(study: Replicates) -> tuple[float, float]:
    c = judge_human_correlations(human=study.human.reshape(-1, 2), judge=study.judge.reshape(-1, 2))
    return c.answers, c.differences[(0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("quality", list(JUDGES))
def test_the_ppi_interval_covers_the_true_difference(runs, quality: str) -> None:
    _, fits = runs[quality]
    low, high = band(len(fits), 0.93, 0.97)
    for column in ("covered", "human_covered"):
        assert low <= fits[column].mean() <= high, f"{column} {fits[column].mean():.1%} outside {low:.1%}-{high:.1%}"


@pytest.mark.slow
def test_a_judge_correlated_08_on_differences_narrows_the_interval_by_a_quarter_with_humans_on_a_quarter(runs) -> None:
    study, fits = runs["0.8"]
    answers, differences = correlations(study)
    assert 0.75 <= differences <= 0.85 and answers > differences, (answers, differences)
    assert fits["ratio"].mean() <= 0.75, fits["ratio"].describe()


@pytest.mark.slow
def test_the_effective_human_tasks_fall_with_the_judge_s_correlation(runs) -> None:
    """PPI++ at the best lam keeps 1 - rho^2 (1 - n/N) of the humans' variance: n / that labels' worth."""
    gains = []
    for quality in ("0.8", "0.5", "0.2"):
        study, fits = runs[quality]
        _, rho = correlations(study)
        assert abs(rho - float(quality)) < 0.05, (quality, rho)
        gains.append(fits["effective"].mean())
        assert gains[-1] == pytest.approx(1 / (1 - rho**2 * 3 / 4), rel=0.03), quality
    assert gains[0] > gains[1] > gains[2] > 1


@pytest.mark.slow
def test_a_useless_judge_widens_no_interval_by_more_than_5_percent(runs) -> None:
    study, fits = runs["useless"]
    _, rho = correlations(study)
    assert abs(rho) < 0.03
    assert fits["ratio"].max() <= 1.05 and fits["lam"].mean() < 0.1, fits[["ratio", "lam"]].describe()


@pytest.mark.slow
def test_weighted_ppi_covers_when_humans_rate_where_the_judge_favours_a_more_often() -> None:
    """Tasks the judge gives to a are labelled three times as often: the humans' plain mean of those labels is biased
    towards a, the weighted estimates are not, and the variance they report is the spread they show."""
    study = replicates(JUDGES["0.8"], tasks=800, seed=12)
    rng = np.random.default_rng(6)
    fits = []
    for human, scores in zip(difference(study.human), difference(study.judge)):
        probability = np.where(scores > 0, 3.0, 1.0)
        probability *= 0.25 / probability.mean()
        chosen = rng.random(scores.size) < probability
        fit = ppi_mean(
            human=human[chosen],
            judge_labeled=scores[chosen],
            judge_all=scores,
            confidence=0.95,
            sampling_probability=probability[chosen],
        )
        plain = ppi_mean(human=human[chosen], judge_labeled=scores[chosen], judge_all=scores, confidence=0.95)
        fits.append(
            {
                "covered": fit.low <= study.truth <= fit.high,
                "human_covered": fit.human.low <= study.truth <= fit.human.high,
                "unweighted_covered": plain.human.low <= study.truth <= plain.human.high,
                "estimate": fit.estimate,
                "half": (fit.high - fit.low) / 2,
                "ratio": width(fit.low, fit.high) / width(fit.human.low, fit.human.high),
            }
        )
    fits = pd.DataFrame(fits)
    low, high = band(len(fits), 0.93, 0.97)
    assert low <= fits["covered"].mean() <= high and low <= fits["human_covered"].mean() <= high
    assert fits["unweighted_covered"].mean() < low, "the probabilities matter: without them the labels are biased"
    assert abs(fits["estimate"].mean() - study.truth) < 4 * fits["estimate"].std() / np.sqrt(len(fits))
    assert (fits["half"] / 1.96).mean() == pytest.approx(fits["estimate"].std(), rel=0.1)
    assert fits["ratio"].mean() < 0.75
