"""The simulated study's generative model: its tables are the artifacts pull and generate write, and the truths it
claims are what its scores show (within a few standard errors on large draws)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from llm_feedback.artifacts import ANNOTATIONS, GENERATIONS, text_sha
from llm_feedback.testing.simulated_study import (
    Annotator,
    Population,
    Style,
    outcome_rates,
    regenerate_lowest,
    simulate,
    with_difference,
)

HONEST = {"harsh": Annotator(leniency=-0.5, noise=0.6), "fair": Annotator(noise=0.8), "kind": Annotator(leniency=0.4)}
MID = Population(tasks=20_000, means={"a": 3.8, "b": 3.3, "c": 3.0}, annotators=HONEST, task_sd=0.5)


def frame(population: Population, **changes) -> tuple[pd.DataFrame, pd.DataFrame]:
    study = simulate(dataclasses.replace(population, **changes))
    return study.annotations.to_pandas(), study.generations.to_pandas()


def within(observed: float, expected: float, standard_error: float) -> bool:
    return abs(observed - expected) <= 4 * standard_error


def test_the_tables_are_the_artifacts_pull_and_generate_write() -> None:
    population = dataclasses.replace(MID, tasks=300, annotators_per_task=2, draft_rate=0.1, discard_rate=0.1)
    study = simulate(population)
    ANNOTATIONS.validate(study.annotations, "annotations")
    GENERATIONS.validate(study.generations, "generations")
    rows, answers = study.annotations.to_pandas(), study.generations.to_pandas()
    assert len(answers) == 300 * 3 and not answers.duplicated(["task_id", "model"]).any()
    answers["sha"] = [text_sha(r) for r in answers["response"]]
    rated = rows.merge(answers, on=["task_id", "model"], how="left")
    assert (rated["response_sha"] == rated["sha"]).all(), "every score is of the current answer"
    response = rows.groupby(["record_id", "annotator"])
    assert (response["position"].apply(sorted).map(tuple) == (1, 2, 3)).all()
    assert (response["model"].nunique() == 3).all() and (response["status"].nunique() == 1).all()
    assert (rows.groupby("record_id")["task_id"].nunique() == 1).all() and rows["record_id"].nunique() == 300
    assert (rows.groupby("record_id")["annotator"].nunique() == 2).all()


def test_the_true_means_differences_and_position_effect_are_what_the_scores_show() -> None:
    population = dataclasses.replace(MID, position_bias={2: 0.5, 3: -0.3})
    study = simulate(population)
    rows = study.annotations.to_pandas()
    per_task = rows.groupby(["task_id", "model"])["score"].mean().unstack()
    se = per_task.std() / np.sqrt(len(per_task))
    offset = np.mean([a.leniency for a in HONEST.values()]) + (0.5 - 0.3) / 3
    for model, mean in population.means.items():
        assert within(per_task[model].mean(), study.means[model], se[model]), model
        assert study.means[model] == pytest.approx(mean + offset, abs=0.02), "mid-scale, clipping barely matters"
    for pair, difference in study.difference.items():
        a, b = pair.split("_vs_")
        paired = per_task[a] - per_task[b]
        assert within(paired.mean(), difference, paired.std() / np.sqrt(len(paired))), pair
    by_position = rows.groupby(["model", "position"])["score"].agg(["mean", "var", "size"])
    for position, effect in study.position_effect.items():
        contrast = by_position.xs(position, level="position") - by_position.xs(1, level="position")
        se = np.sqrt(((by_position["var"] / by_position["size"]).groupby("model").sum()).sum()) / 3
        assert within(contrast["mean"].mean(), effect, se), position
    assert study.position_effect == pytest.approx({2: 0.5, 3: -0.3}, abs=0.02)


def test_the_truths_account_for_clipping_at_the_ends_of_the_scale() -> None:
    population = dataclasses.replace(MID, means={"top": 6.8, "bottom": 0.4}, task_sd=1.0)
    study = simulate(population)
    rows = study.annotations.to_pandas()
    per_task = rows.groupby(["task_id", "model"])["score"].mean().unstack()
    for model in ("top", "bottom"):
        assert within(per_task[model].mean(), study.means[model], per_task[model].std() / np.sqrt(len(per_task)))
    assert study.means["top"] < 6.8 - 0.2 and study.means["bottom"] > 0.4 + 0.2, "clipped, so pulled inwards"


def test_without_noise_every_score_is_the_rounded_truth() -> None:
    exact = {"one": Annotator(leniency=0.3, noise=0.0), "two": Annotator(leniency=-0.2, noise=0.0)}
    population = Population(tasks=50, means={"a": 5.4, "b": 2.1}, annotators=exact, task_sd=0.0)
    study = simulate(population)
    rows = study.annotations.to_pandas()
    expected = {("a", "one"): 6, ("a", "two"): 5, ("b", "one"): 2, ("b", "two"): 2}
    assert rows.groupby(["model", "annotator"])["score"].unique().map(list).to_dict() == {
        key: [score] for key, score in expected.items()
    }
    assert study.means == pytest.approx({"a": 5.5, "b": 2.0})
    assert study.difference == pytest.approx({"a_vs_b": 3.5}) and study.bad == frozenset()


def test_random_and_adversarial_annotators_are_what_they_claim() -> None:
    pool = {
        "honest": Annotator(noise=0.0),
        "random": Annotator(kind="random"),
        "adversarial": Annotator(noise=0.0, kind="adversarial"),
    }
    study = simulate(dataclasses.replace(MID, tasks=4000, annotators=pool))
    assert study.bad == {"random", "adversarial"}
    rows = study.annotations.to_pandas()
    wide = rows.pivot_table(index=["record_id", "position"], columns="annotator", values="score")
    assert (wide["adversarial"] == 7 - wide["honest"]).all()
    shares = wide["random"].value_counts(normalize=True).sort_index()
    assert list(shares.index) == list(range(8)) and (abs(shares - 1 / 8) < 0.02).all()
    assert abs(np.corrcoef(wide["random"], wide["honest"])[0, 1]) < 0.05
    models = rows.groupby(["annotator", "model"])["score"].mean()
    assert (abs(models["random"] - 3.5) < 0.1).all()
    assert study.means == pytest.approx(
        {m: (2 * 3.5 + (models["honest"][m] + models["adversarial"][m]) / 2) / 3 for m in study.compare}, abs=0.05
    ), "a random and an adversarial annotator pull every mean towards 3.5"


def test_drafts_and_discards_come_at_their_rates_and_hold_scores_that_must_not_count() -> None:
    exact = {"one": Annotator(noise=0.0), "two": Annotator(noise=0.0)}
    population = Population(
        tasks=5000, means={"a": 5.0, "b": 2.0}, annotators=exact, task_sd=0.0, draft_rate=0.2, discard_rate=0.1
    )
    rows = simulate(population).annotations.to_pandas()
    responses = rows.drop_duplicates(["record_id", "annotator"])["status"].value_counts(normalize=True)
    se = np.sqrt(0.2 * 0.8 / 10_000)
    assert within(responses["draft"], 0.2, se) and within(responses["discarded"], 0.1, se)
    scores = rows.groupby(["status", "model"])["score"].unique().map(list).to_dict()
    assert scores == {
        ("submitted", "a"): [5],
        ("submitted", "b"): [2],
        ("draft", "a"): [2],
        ("draft", "b"): [5],
        ("discarded", "a"): [2],
        ("discarded", "b"): [5],
    }


def test_annotators_and_display_order_are_drawn_at_random() -> None:
    rows, _ = frame(MID, tasks=6000, annotators_per_task=1)
    records = rows.drop_duplicates(["record_id", "annotator"])
    assert records["record_id"].is_unique
    shares = records["annotator"].value_counts(normalize=True)
    assert (abs(shares - 1 / 3) < 4 * np.sqrt(2 / 9 / 6000)).all()
    placed = rows.groupby(["model", "position"]).size() / 6000
    assert (abs(placed - 1 / 3) < 4 * np.sqrt(2 / 9 / 6000)).all()
    first = rows[rows["position"] == 1].set_index("record_id")["model"]
    second = rows[rows["position"] == 2].set_index("record_id")["model"]
    assert (first != second.reindex(first.index)).all()


def test_longer_answers_earn_the_length_reward_and_quality_difference_leaves_it_out() -> None:
    population = dataclasses.replace(
        MID,
        means={"terse": 3.5, "verbose": 3.5},
        styles={"terse": Style(lines=5, code_blocks=0.5), "verbose": Style(lines=105, code_blocks=3)},
        length_reward=1.0,
    )
    study = simulate(population)
    answers = study.generations.to_pandas()
    answers["lines"] = answers["response"].str.count("x = x \\+ 1")
    answers["blocks"] = answers["response"].str.count("```python")
    style = answers.groupby("model")[["lines", "blocks"]].mean()
    assert style["lines"].to_dict() == pytest.approx({"terse": 5, "verbose": 105}, rel=0.02)
    assert style["blocks"].to_dict() == pytest.approx({"terse": 0.5, "verbose": 3}, rel=0.05)
    assert study.difference["terse_vs_verbose"] == pytest.approx(-1.0, abs=0.05)
    assert study.quality_difference["terse_vs_verbose"] == pytest.approx(0.0, abs=1e-9)
    per_task = study.annotations.to_pandas().groupby(["task_id", "model"])["score"].mean().unstack()
    paired = per_task["terse"] - per_task["verbose"]
    assert within(paired.mean(), study.difference["terse_vs_verbose"], paired.std() / np.sqrt(len(paired)))


def test_outcome_rates_are_the_chances_of_a_win_a_tie_and_a_loss() -> None:
    """Two equal models rated once with noise 1 and no task effect: a tie is two independent draws from the same
    rounded, clipped normal landing on the same score."""
    one = Population(tasks=1, means={"a": 3.2, "b": 3.2}, annotators={"x": Annotator()}, task_sd=0.0, draft_rate=0.3)
    edges = norm.cdf(np.arange(0.5, 7.0) - 3.2)
    score = np.diff(np.concatenate([[0.0], edges, [1.0]]))
    tie = float(np.sum(score**2))
    rates = outcome_rates(one, draws=400_000)
    assert rates.keys() == {"a_vs_b"}
    assert rates["a_vs_b"] == pytest.approx(((1 - tie) / 2, tie, (1 - tie) / 2), abs=0.004)
    wide = outcome_rates(one, tie_margin=1.0, draws=400_000)["a_vs_b"]
    assert wide[1] == pytest.approx(tie + 2 * float(np.sum(score[1:] * score[:-1])), abs=0.004)
    exact = Population(tasks=1, means={"a": 5.0, "b": 2.0, "c": 2.0}, annotators={"x": Annotator(noise=0.0)})
    assert outcome_rates(dataclasses.replace(exact, task_sd=0.0), draws=1000) == {
        "a_vs_b": (1.0, 0.0, 0.0),
        "a_vs_c": (1.0, 0.0, 0.0),
        "b_vs_c": (0.0, 1.0, 0.0),
    }


def test_regenerating_the_lowest_rated_answers_changes_only_those() -> None:
    study = simulate(dataclasses.replace(MID, tasks=400, means={"a": 4.0, "b": 4.0}, annotators_per_task=1))
    again = regenerate_lowest(study, model="a", count=40)
    before, after = study.generations.to_pandas(), again.generations.to_pandas()
    changed = before["response"] != after["response"]
    assert changed.sum() == 40 and set(before.loc[changed, "model"]) == {"a"}
    scores = study.annotations.to_pandas()
    scores = scores[scores["model"] == "a"].set_index("task_id")["score"]
    assert scores[before.loc[changed, "task_id"]].max() <= scores.drop(before.loc[changed, "task_id"]).min()
    assert again.annotations.equals(study.annotations) and again.difference == study.difference


def test_a_population_can_be_set_to_an_observed_difference() -> None:
    """Near the top of the scale clipping shrinks a gap: the first model's true mean moves until the gap is as asked."""
    high = dataclasses.replace(MID, means={"a": 6.0, "b": 5.5, "c": 5.0}, task_sd=1.0)
    assert simulate(high).difference["a_vs_b"] < 0.45
    study = simulate(with_difference(high, difference=0.5))
    assert study.difference["a_vs_b"] == pytest.approx(0.5, abs=1e-6)
    assert study.means["b"] == pytest.approx(simulate(high).means["b"])
    per_task = study.annotations.to_pandas().groupby(["task_id", "model"])["score"].mean().unstack()
    paired = per_task["a"] - per_task["b"]
    assert within(paired.mean(), 0.5, paired.std() / np.sqrt(len(paired)))
    with pytest.raises(ValueError, match=r"observed difference of 7\.5"):
        with_difference(high, difference=7.5)


def test_the_same_seed_draws_the_same_study() -> None:
    small = dataclasses.replace(MID, tasks=50)
    assert simulate(small).annotations.equals(simulate(small).annotations)
    assert simulate(small, seed=small.seed).annotations.equals(simulate(small).annotations)
    assert not simulate(small, seed=1).annotations.equals(simulate(small).annotations)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"draft_rate": 0.6, "discard_rate": 0.4}, "draft_rate"),
        ({"annotators_per_task": 4}, "annotators_per_task"),
        ({"annotators_per_task": 0}, "annotators_per_task"),
    ],
)
def test_an_impossible_population_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(MID, **changes)


def test_a_judge_blind_on_a_share_of_tasks_scores_both_answers_alike_there_and_draws_as_before_elsewhere() -> None:
    from llm_feedback.testing.simulated_study import Judge

    population = Population(
        tasks=4000,
        means={"a": 4.5, "b": 3.5},
        annotators={"x": Annotator()},
        answer_sd=1.0,
        judge=Judge(bias={"a": 0.5}, noise=0.3),
    )
    sighted = simulate(population).judgments.to_pandas()
    blind = simulate(dataclasses.replace(population, judge=Judge(bias={"a": 0.5}, noise=0.3, blind_share=0.5)))
    assert sighted.equals(simulate(population).judgments.to_pandas()), "no blind share: the same draws"
    wide = blind.judgments.to_pandas().pivot(index="task_id", columns="model", values="score")
    difference = wide["a"] - wide["b"]
    # blind tasks differ by the judge's view of the models alone (4.5 + 0.5 - 3.5 = 1.5 points, rounded either way)
    alike = difference.isin([1, 2]).mean()
    sighted_wide = sighted.pivot(index="task_id", columns="model", values="score")
    assert alike > (sighted_wide["a"] - sighted_wide["b"]).isin([1, 2]).mean() + 0.2
    unchanged = (wide == sighted_wide).all(axis=1).mean()
    assert 0.5 <= unchanged < 0.8, "the other half of the tasks are scored exactly as by the sighted judge"
