"""analyze's verdict is calibrated: on simulated studies with a known truth (`simulated_study`), run through the real
`analyze`, its intervals cover the true difference, it decides when there is a difference and not when there is none,
its rates stay honest at 0 and n, it finds a position bias and a random annotator, and drafts and discards do not
count. bench/verdict.py runs the same study with hundreds of replicates per figure.

With a few dozen replicates a rate is known only to several points, so each acceptance band is the issue's target
widened by the binomial sampling error: a procedure that meets the target passes with probability at least 99.8%
(`band` below), and one far off it fails. The seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import dataclasses

import pyarrow.compute as pc
import pytest
from scipy.stats import binom

from llm_feedback.analysis import analyze
from llm_feedback.params import AnalyzeParams
from llm_feedback.testing.simulated_study import Annotator, Population, Simulated, simulate, with_difference

pytestmark = pytest.mark.slow

PARAMS = AnalyzeParams(bootstrap=500, permutations=2000)
SURE = 0.001  # the chance a procedure on target still falls outside the band, per side
# two models 0.5 apart (in expected observed score), one annotator per task from three of different leniency, noise
# sd 1.5; 5% drafts, 5% discards
BASE = with_difference(
    Population(
        tasks=200,
        means={"a": 4.0, "b": 3.5},
        annotators={
            "harsh": Annotator(leniency=-0.5, noise=1.5),
            "fair": Annotator(noise=1.5),
            "lenient": Annotator(leniency=0.5, noise=1.5),
        },
        annotators_per_task=1,
        task_sd=1.0,
        draft_rate=0.05,
        discard_rate=0.05,
    ),
    difference=0.5,
)


def band(replicates: int, low: float, high: float) -> tuple[float, float]:
    """The shares of `replicates` runs consistent with a true rate in [low, high]."""
    return binom.ppf(SURE, replicates, low) / replicates, binom.isf(SURE, replicates, high) / replicates


def metrics(study: Simulated, **params) -> dict:
    return analyze(
        annotations=study.annotations,
        generations=study.generations,
        compare=study.compare,
        params=PARAMS.model_copy(update=params),
    ).metrics


def replicates(population: Population, count: int) -> list[tuple[Simulated, dict]]:
    return [(study, metrics(study)) for study in (simulate(population, seed=s) for s in range(count))]


def covered(study: Simulated, m: dict) -> bool:
    pair = m["pairwise"]["a_vs_b"]
    return pair["ci_low"] <= study.difference["a_vs_b"] <= pair["ci_high"]


@pytest.fixture(scope="module")
def studies() -> dict[str, list[tuple[Simulated, dict]]]:
    """Replicates at 30, 200 and 1000 tasks with a 0.5-point gap, and at 200 tasks with none."""
    return {
        "30": replicates(dataclasses.replace(BASE, tasks=30), 40),
        "200": replicates(BASE, 40),
        "1000": replicates(dataclasses.replace(BASE, tasks=1000), 12),
        "200, no difference": replicates(dataclasses.replace(BASE, means={"a": 3.75, "b": 3.75}), 40),
    }


@pytest.mark.parametrize("cell", ["30", "200", "1000", "200, no difference", "all"])
def test_the_paired_interval_covers_the_true_difference(studies, cell: str) -> None:
    runs = [r for runs in studies.values() for r in runs] if cell == "all" else studies[cell]
    share = sum(covered(*r) for r in runs) / len(runs)
    low, high = band(len(runs), 0.93, 0.97)
    assert low <= share <= high, f"coverage {share:.0%} ({cell}), outside {low:.0%}-{high:.0%}"


def test_a_half_point_gap_is_decided_at_200_tasks_with_one_noisy_annotator_each(studies) -> None:
    """noise sd 1.5, gap 0.5: the target is power >= 85%; the per-model intervals kept apart about half as often."""
    runs = studies["200"]
    decided = [m["pairwise"]["a_vs_b"]["decided"] for _, m in runs]
    assert sum(decided) / len(decided) >= band(len(decided), 0.85, 0.85)[0]
    assert all(m["verdict"].startswith("a beats b by +") for _, m in runs if m["pairwise"]["a_vs_b"]["decided"])
    apart = [m["models"]["a"]["ci_low"] > m["models"]["b"]["ci_high"] for _, m in runs]
    assert sum(decided) > sum(apart)


def test_no_true_difference_is_rarely_decided(studies) -> None:
    runs = studies["200, no difference"]
    decided = [m["pairwise"]["a_vs_b"]["decided"] for _, m in runs]
    assert sum(decided) / len(decided) <= band(len(decided), 0.05, 0.05)[1]
    undecided = [m["verdict"] for _, m in runs if not m["pairwise"]["a_vs_b"]["decided"]]
    assert undecided and all(v.startswith("not decided: a - b = ") for v in undecided)


def test_thirty_wins_of_thirty_keep_an_honest_lower_bound() -> None:
    """Wilson's interval for 30 of 30 reaches down to 0.886; a percentile bootstrap collapses to 1 to 1."""
    sweep = Population(tasks=30, means={"a": 6.0, "b": 1.0}, annotators={"x": Annotator(noise=0.0)}, task_sd=0.0)
    pair = metrics(simulate(sweep))["pairwise"]["a_vs_b"]
    assert pair["tasks"] == 30 and pair["win"] == 1.0 and pair["decisive"] == 1.0
    assert 0.85 < pair["win_ci_low"] <= 0.89 and 0.85 < pair["decisive_ci_low"] <= 0.89
    assert pair["tie"] == 0.0 and 0.05 < pair["tie_ci_high"] < 0.15, "no tie in 30 does not mean none ever"


def test_a_position_bias_is_recovered_within_a_tenth_of_a_point_at_1000_tasks() -> None:
    population = dataclasses.replace(
        BASE,
        tasks=1000,
        means={"a": 3.5, "b": 3.0},
        annotators={"h1": Annotator(leniency=-0.3), "h2": Annotator(leniency=0.3), "h3": Annotator()},
        annotators_per_task=2,
        position_bias={2: 1.0},
    )
    for study, m in replicates(population, 5):
        effect = m["position"]["effect"]["2"]
        assert abs(effect["value"] - 1.0) <= 0.1, effect
        assert effect["ci_low"] <= study.position_effect[2] <= effect["ci_high"], (effect, study.position_effect)


def test_a_random_annotator_among_three_is_flagged_and_the_honest_ones_are_not() -> None:
    population = dataclasses.replace(
        BASE,
        annotators={"h1": Annotator(leniency=-0.3), "h2": Annotator(leniency=0.3), "clicker": Annotator(kind="random")},
        annotators_per_task=2,
    )
    runs = replicates(population, 20)
    flagged = [m["annotators"]["clicker"]["flagged"] == "random" for _, m in runs]
    assert sum(flagged) / len(flagged) >= band(len(flagged), 0.95, 0.95)[0]
    honest = [bool(m["annotators"][h]["flagged"]) for _, m in runs for h in ("h1", "h2")]
    assert sum(honest) / len(honest) <= band(len(honest), 0.05, 0.05)[1]


def test_drafts_and_discards_do_not_count() -> None:
    """Their scores (7 minus the honest one) would pull the difference towards zero if they counted."""
    study = simulate(dataclasses.replace(BASE, draft_rate=0.2, discard_rate=0.1))
    rows = study.annotations
    submitted = dataclasses.replace(study, annotations=rows.filter(pc.equal(rows.column("status"), "submitted")))
    counted = dataclasses.replace(
        study, annotations=rows.set_column(7, "status", pc.if_else(pc.is_valid(rows.column("score")), "submitted", ""))
    )
    full, only_submitted, all_counted = metrics(study), metrics(submitted), metrics(counted)
    responses = full["counts"]["responses"]
    assert responses["draft"] > 0 and responses["discarded"] > 0
    for key in ("pairwise", "models", "position", "verdict"):
        assert full[key] == only_submitted[key], key
    assert full["pairwise"]["a_vs_b"]["difference"] - all_counted["pairwise"]["a_vs_b"]["difference"] > 0.1
