"""The verdict's parts on simulated annotators with a known truth: the line itself, the position and leniency
regression (against statsmodels with every task as a dummy), the annotator flags, style control and
`analyze.exclude_annotators`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.annotator_agreement import annotator_agreement
from llm_feedback.effects import estimate_effects
from llm_feedback.errors import ConfigError
from llm_feedback.params import AnalyzeParams
from llm_feedback.stats import Interval
from llm_feedback.testing.simulated_study import Annotator, Judge, Population, Style, regenerate_lowest, simulate
from llm_feedback.verdict import Comparison, verdict_line

FAST = AnalyzeParams(bootstrap=400, permutations=2000)


def run(population: Population, **params) -> dict:
    simulated = simulate(population)
    return analyze(
        annotations=simulated.annotations,
        generations=simulated.generations,
        compare=simulated.compare,
        params=FAST.model_copy(update=params),
    ).metrics


def comparison(estimate, low, high, *, p=0.2, decided=False, tasks=40, power=200) -> Comparison:
    return Comparison("a", "b", Interval(estimate, low, high), p, p, decided, tasks, power)


def test_the_line_for_one_pair() -> None:
    decided = comparison(-1.3, -1.7, -0.9, p=0.0001, decided=True, tasks=200)
    assert verdict_line([decided], {}, confidence=0.95, min_difference=0.5) == (
        "b beats a by +1.30 points (95% CI +0.90 to +1.70, p < 0.001, 200 tasks)"
    )
    assert verdict_line([comparison(0.2, -0.3, 0.7)], {}, confidence=0.95, min_difference=0.5) == (
        "not decided: a - b = +0.20 points (95% CI -0.30 to +0.70, p = 0.200) on 40 tasks; "
        "about 160 more tasks for 80% power at a 0.5-point difference"
    )
    assert verdict_line([comparison(0.05, -0.2, 0.3, tasks=900)], {}, confidence=0.95, min_difference=0.5) == (
        "not decided: a - b = +0.05 points (95% CI -0.20 to +0.30, p = 0.200) on 900 tasks; "
        "a gap of 0.5 points or more is ruled out"
    )
    none = comparison(None, None, None, p=None, tasks=0, power=None)
    assert verdict_line([none], {}, confidence=0.95, min_difference=0.5).startswith("no verdict yet")


def test_three_models_rank_and_name_the_decided_pairs() -> None:
    metrics = run(
        Population(
            tasks=300,
            means={"strong": 5.0, "tied": 3.5, "twin": 3.5},
            annotators={"x": Annotator(noise=1.0)},
            seed=4,
        )
    )
    line = metrics["verdict"]
    assert line.startswith("ranking on 300 tasks: strong ")
    assert "decided: strong beats tied by +" in line and "strong beats twin by +" in line
    assert "not decided: tied vs twin" in line and "Holm p" in line
    assert metrics["pairwise"]["tied_vs_twin"]["decided"] is False
    assert metrics["pairwise"]["strong_vs_tied"]["p_holm"] >= metrics["pairwise"]["strong_vs_tied"]["p_value"]


def within_task_rows(n: int, *, position_effect: float, seed: int, a_second: float = 0.5) -> pd.DataFrame:
    """Unrounded, unclipped scores: a linear model the regression must recover exactly (up to noise). The better
    model a is shown second in a share `a_second` of the records."""
    rng = np.random.default_rng(seed)
    leniency = {"harsh": -1.0, "fair": 0.0, "kind": 1.0}
    rows = []
    for task in range(n):
        effect, order = rng.normal(0, 1.5), (["b", "a"] if rng.random() < a_second else ["a", "b"])
        for annotator in rng.choice(list(leniency), size=2, replace=False):
            for position, model in enumerate(order, 1):
                score = (
                    4.0
                    + (0.5 if model == "a" else 0.0)
                    + effect
                    + leniency[annotator]
                    + position_effect * (position == 2)
                    + rng.normal(0, 0.8)
                )
                rows.append((f"t{task}", f"r{task}", model, position, annotator, score))
    return pd.DataFrame(rows, columns=["task_id", "record_id", "model", "position", "annotator", "score"])


def test_position_and_leniency_match_a_regression_with_every_task_as_a_dummy() -> None:
    import statsmodels.formula.api as smf

    rows = within_task_rows(150, position_effect=1.0, seed=5)
    effects = estimate_effects(rows, confidence=0.95)
    reference = smf.ols("score ~ C(task_id) + C(model) + C(position) + C(annotator)", data=rows).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows["task_id"])[0]}
    )
    assert effects.position[2].estimate == pytest.approx(reference.params["C(position)[T.2]"], abs=1e-8)
    # the same clustered errors, but for the small-sample factor: statsmodels counts the task dummies among the
    # parameters, the within estimator (as Stata's xtreg, fe with clusters that nest the tasks) does not
    n, with_dummies, within = len(rows), len(reference.params), 1 + 2 + 2
    factor = np.sqrt((n - with_dummies) / (n - within))
    half_width = (effects.position[2].high - effects.position[2].low) / 2
    assert half_width == pytest.approx(1.96 * reference.bse["C(position)[T.2]"] * factor, rel=0.01)
    assert effects.position[2].low < 1.0 < effects.position[2].high
    offsets = {a: i.estimate for a, i in effects.leniency.items()}
    assert offsets["kind"] - offsets["harsh"] == pytest.approx(2.0, abs=0.2)
    assert sum(offsets.values()) == pytest.approx(0.0, abs=1e-9), "offsets from the average annotator"


def test_position_is_not_confounded_with_the_model_shown_there() -> None:
    """The better model shown second in 90% of records: the raw means by position differ, the effect does not."""
    rows = within_task_rows(400, position_effect=0.0, seed=6, a_second=0.9)
    raw = rows.groupby("position")["score"].mean()
    assert raw[2] - raw[1] > 0.3, "raw means credit position 2 with the better model's lead"
    effect = estimate_effects(rows, confidence=0.95).position[2]
    assert effect.low < 0.0 < effect.high and abs(effect.estimate) < 0.15


@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_a_bad_annotator_is_flagged_and_the_honest_ones_are_not(kind: str) -> None:
    simulated = simulate(
        Population(
            tasks=200,
            means={"a": 4.5, "b": 3.5},
            annotators={
                "h1": Annotator(noise=1.0),
                "h2": Annotator(noise=1.0, leniency=-1.0),
                "bad": Annotator(kind=kind),
            },
            annotators_per_task=2,
            task_sd=1.5,
            seed=7,
        )
    )
    rows = simulated.annotations.to_pandas()
    flags = annotator_agreement(rows[rows["status"] == "submitted"], confidence=0.95)
    assert flags["bad"].flagged.startswith(kind), flags["bad"]
    assert flags["h1"].flagged is None and flags["h2"].flagged is None, "a harsh but careful annotator is fine"
    metrics = analyze(
        annotations=simulated.annotations,
        generations=simulated.generations,
        compare=simulated.compare,
        params=FAST.model_copy(update={"exclude_annotators": ["bad"]}),
    )
    assert "bad" not in metrics.metrics["annotators"] and metrics.metrics["counts"]["excluded_annotators"] == ["bad"]
    assert "left out by analyze.exclude_annotators: bad" in metrics.line()


def test_excluding_an_annotator_nobody_knows_is_a_config_error() -> None:
    simulated = simulate(Population(tasks=20, means={"a": 4, "b": 4}, annotators={"x": Annotator()}, seed=1))
    with pytest.raises(ConfigError, match=r"analyze.exclude_annotators: no responses by bob \(annotators: x\)"):
        analyze(
            annotations=simulated.annotations,
            generations=simulated.generations,
            compare=simulated.compare,
            params=FAST.model_copy(update={"exclude_annotators": ["bob"]}),
        )


def test_style_control_takes_away_a_lead_won_by_writing_more() -> None:
    metrics = run(
        Population(
            tasks=600,
            means={"verbose": 4.0, "terse": 4.0},
            annotators={"x": Annotator(noise=1.0)},
            styles={"verbose": Style(lines=40.0, code_blocks=2.0), "terse": Style(lines=10.0, code_blocks=1.0)},
            length_reward=2.0,
            seed=8,
        )
    )
    pair = metrics["pairwise"]["verbose_vs_terse"]
    assert pair["decided"] and pair["difference"] > 0.3, "raw: the longer answers win"
    styled = pair["style_controlled"]
    assert styled["ci_low"] < 0.0 < styled["ci_high"], pair
    assert abs(styled["difference"]) < pair["difference"] / 3


def test_a_decision_that_rests_on_regenerated_answers_is_held_back_until_they_are_rated_again() -> None:
    """Two equal models; a's 40 lowest-rated of 400 answers regenerated after rating. Leaving those tasks out keeps
    a's luckier answers and (in this draw) a significant difference; with the earlier ratings counted there is none."""
    simulated = regenerate_lowest(
        simulate(Population(tasks=400, means={"a": 4.0, "b": 4.0}, annotators={"x": Annotator(noise=1.5)}, seed=0)),
        model="a",
        count=40,
    )
    result = analyze(
        annotations=simulated.annotations, generations=simulated.generations, compare=["a", "b"], params=FAST
    )
    pair = result.metrics["pairwise"]["a_vs_b"]
    assert pair["tasks"] == 360 and pair["p_holm"] < 0.05, "the selected sample alone would decide"
    assert pair["with_earlier_ratings"]["tasks"] == 400 and pair["with_earlier_ratings"]["ci_low"] < 0
    assert pair["decided"] is False and pair["held_back"].startswith("held back: 40 tasks wait for re-rating")
    assert result.metrics["verdict"].startswith("not decided: a - b = +") and "held back" in result.metrics["verdict"]
    assert "40 tasks left out: an answer changed after it was rated" in result.line()


def test_with_a_judge_on_every_task_and_humans_on_a_quarter_analyze_reports_the_judge_assisted_verdict() -> None:
    simulated = simulate(
        Population(
            tasks=400,
            means={"a": 4.3, "b": 4.0},
            annotators={"x": Annotator(noise=0.4)},
            answer_sd=1.0,
            judge=Judge(bias={"a": 0.6, "b": -0.2}, noise=0.35),
            seed=12,
        )
    )
    rows = simulated.annotations
    tasks = rows.column("task_id").to_pylist()
    everyone = sorted(set(tasks))
    rated = {everyone[i] for i in np.random.default_rng(0).choice(400, size=100, replace=False)}
    quarter = rows.filter(pa.array([t in rated for t in tasks]))
    assert len(set(quarter.column("task_id").to_pylist())) == 100
    result = analyze(
        annotations=quarter,
        generations=simulated.generations,
        compare=simulated.compare,
        params=FAST,
        judgments=simulated.judgments,
    )
    assisted = result.metrics["judge"]["assisted"]
    assert (assisted["human_tasks"], assisted["judge_tasks"]) == (100, 400)
    pair = assisted["pairwise"]["a_vs_b"]
    assert pair["human_only"]["difference"] == pytest.approx(result.metrics["pairwise"]["a_vs_b"]["difference"])
    assert assisted["correlation"]["differences"]["a_vs_b"] > 0.6
    assert pair["width_ratio"] < 0.85 and pair["effective_human_tasks"] > 130, pair
    assert pair["ci_low"] < simulated.difference["a_vs_b"] < pair["ci_high"]


def test_in_rounds_the_judge_assisted_estimate_takes_the_last_fully_rated_round_with_its_chances() -> None:
    from llm_feedback.judge_assisted import _design

    chances = {"t1": (1, [0.5, 1.0]), "t2": (1, [0.25, 0.5]), "t3": (2, [1.0]), "t4": (2, [0.5])}
    rated = pd.Index(["t1", "t2", "t3"], name="task_id")  # round 2 is rated in part: who rated first is no draw
    tasks, probability = _design(rated, chances)
    assert list(tasks) == ["t1", "t2"] and probability.to_dict() == {"t1": 0.5, "t2": 0.25}
    tasks, probability = _design(rated.append(pd.Index(["t4"])), chances)
    assert list(tasks) == ["t1", "t2", "t3", "t4"]
    assert probability.to_dict() == {"t1": 1.0, "t2": 0.5, "t3": 1.0, "t4": 0.5}, "chances by the last round"
    assert _design(rated, {})[1] is None, "outside rounds: a uniform sample"


def test_position_effects_are_measured_against_the_first_position_even_when_it_is_scored_less_often() -> None:
    rows = within_task_rows(300, position_effect=1.0, seed=9)
    unscored = (rows["position"] == 1) & (np.random.default_rng(0).random(len(rows)) < 0.3)  # left blank
    effects = estimate_effects(rows[~unscored], confidence=0.95)
    assert effects.position[1] == Interval(0.0, 0.0, 0.0)
    assert effects.position[2].low < 1.0 < effects.position[2].high
