"""Benchmark: is analyze's verdict calibrated? A simulation study on annotators with a known truth.

Every replicate draws a study from a population (`llm_feedback.testing.simulated_study`: task effects, annotator
leniency and noise, random or adversarial annotators, shuffled display order, position bias, 5% drafts and 5% discards
whose scores must not count, answer lengths that annotators may reward), runs the real `analyze` on its annotations
and generations tables with the shipped defaults (1,000 bootstrap resamples, 10,000 sign flips), and compares what
analyze reports with the truth. Unless a cell says otherwise: two models whose expected observed scores are 0.5 points
apart (b's true mean 3.5, a's about 4.03: rounding and clipping shrink the latent gap a little), one annotator per
task from a pool of three with leniency -0.5, 0, +0.5 and noise sd 1.5, task effect sd 1.

Each figure is printed against its target and a baseline from the same runs:
- coverage of the paired difference's interval at 30, 200 and 1000 tasks (target 93-97%), against a percentile
  bootstrap interval on the same tasks and resamples and Student's t interval;
- power at 200 tasks (target >= 85%), against "the two per-model intervals do not overlap" (the reading the per-model
  table invited); and power at the number of tasks the verdict asks for 80% power at a 0.5-point gap (its
  `tasks_for_power` on a 20,000-task study of the same population);
- false decisions with no true difference, for two models and for three (Holm across the pairs), against unadjusted
  p-values; the 30-of-30 lower bounds; Wilson coverage of the tie, win and decisive rates at 30 tasks, against
  percentile bootstrap intervals;
- the position effect (+1 at position 2, 1000 tasks: within 0.1 of the truth), against the raw per-position means;
  and at 20 tasks with a 2-point model gap and no position bias, where the raw table is confounded with the models;
- annotator flags: a random or an adversarial annotator among three (two per task), and three honest ones, with
  noise sd 1.5 as above and (reported, no target) noise sd 2 with task effect sd 0.5, where honest scores carry
  little signal;
- stale scores (two equal models, A's 40 lowest-rated of 400 answers regenerated), against the same runs before;
- `aggregate: majority` with 2 and 3 noisy raters: its mean minus the `mean` aggregate's, against the old rule
  (ties to the lower score);
- style control: two equal models, one writing more, and annotators rewarding length (10 vs 30 lines on average,
  2.5 points per 100 lines; and 5 vs 60 lines, 1 point per 100), against the raw difference; and on the 200-task
  runs above, where styles are alike, whether it keeps the real gap.
A target with a rate ("<= 5%") allows two binomial standard errors of sampling slack; coverage figures show their own.

Run from the project root (about 15 minutes on 2 cores; `--scale 0.1` for a rough look in about 2):

    .venv/bin/python -m bench.verdict [--scale 1.0] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import t
from tqdm import tqdm

from bench.figures import Figure, exit_on_targets, print_figures
from llm_feedback.analysis import Analysis, analyze
from llm_feedback.params import AnalyzeParams
from llm_feedback.stats import bootstrap_sums
from llm_feedback.testing.simulated_study import (
    Annotator,
    Population,
    Simulated,
    Style,
    expected_scores,
    outcome_rates,
    regenerate_lowest,
    simulate,
    with_difference,
)

PARAMS = AnalyzeParams()
HONEST = {
    "harsh": Annotator(leniency=-0.5, noise=1.5),
    "fair": Annotator(noise=1.5),
    "lenient": Annotator(leniency=0.5, noise=1.5),
}


BASE = with_difference(
    Population(
        tasks=200,
        means={"a": 4.0, "b": 3.5},
        annotators=HONEST,
        annotators_per_task=1,
        task_sd=1.0,
        draft_rate=0.05,
        discard_rate=0.05,
    ),
    difference=0.5,
)
PAIR = {"fair": HONEST["fair"], "lenient": HONEST["lenient"]}
EQUAL = {"a": 3.75, "b": 3.75}
CAREFUL = {"h1": Annotator(leniency=-0.3), "h2": Annotator(leniency=0.3)}  # noise sd 1
TWO_OF_THREE = dataclasses.replace(BASE, annotators_per_task=2)


def style(a: float, b: float) -> dict[str, Style]:
    """Model a writes `a` lines on average, model b `b`."""
    return {"a": Style(lines=a), "b": Style(lines=b)}


def run(study: Simulated, **params) -> dict:
    return summary(study, analyze_study(study, **params))


def analyze_study(study: Simulated, **params) -> Analysis:
    return analyze(
        annotations=study.annotations,
        generations=study.generations,
        compare=study.compare,
        params=PARAMS.model_copy(update=params),
    )


def summary(study: Simulated, analysis: Analysis) -> dict:
    """What one analyze run reports, reduced to the numbers the figures need."""
    metrics = analysis.metrics
    first = f"{study.compare[0]}_vs_{study.compare[1]}"
    pair = metrics["pairwise"][first]
    a, b = (metrics["models"][m] for m in study.compare[:2])
    effect = metrics["position"]["effect"].get("2", {})
    raw = metrics["position"]["mean_score"]
    return {
        "truth": study.difference[first],
        "quality_truth": study.quality_difference[first],
        "position_truth": study.position_effect.get(2),
        "pair": pair,
        "any_decided": any(p["decided"] for p in metrics["pairwise"].values()),
        "any_raw": any((p["p_value"] or 1.0) < 1 - PARAMS.confidence for p in metrics["pairwise"].values()),
        "apart": a["ci_low"] > b["ci_high"] or b["ci_low"] > a["ci_high"],
        "means": {m: metrics["models"][m]["mean"] for m in study.compare},
        "position": (effect.get("value"), effect.get("ci_low"), effect.get("ci_high")),
        "raw_position": raw["2"]["mean_score"] - raw["1"]["mean_score"] if {"1", "2"} <= raw.keys() else None,
        "flagged": {name: v["flagged"] for name, v in metrics["annotators"].items()},
        "agreement": {name: v["agreement"] for name, v in metrics["annotators"].items()},
        "percentile": percentile_intervals(analysis.scores, study.compare),
    }


def percentile_intervals(scores, models: list[str]) -> dict[str, tuple[float, float]]:
    """The baselines: percentile bootstrap intervals (as analyze gave for rates before) of the first pair's
    difference and tie, win and decisive rates, on the same complete tasks and resamples; and Student's t interval
    of the difference."""
    wide = scores.pivot(index="task_id", columns="model", values="score").reindex(columns=models[:2]).dropna()
    difference = (wide[models[0]] - wide[models[1]]).to_numpy()
    margin = PARAMS.tie_margin
    win, tie, loss = difference > margin, np.abs(difference) <= margin, difference < -margin
    columns = np.column_stack([difference, np.ones_like(difference), tie, win, win | loss])
    _, samples = bootstrap_sums(columns, PARAMS.bootstrap, PARAMS.seed)
    tail = 50 * (1 - PARAMS.confidence)
    result = {}
    for name, top, bottom in (("difference", 0, 1), ("tie", 2, 1), ("win", 3, 1), ("decisive", 3, 4)):
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = samples[:, top] / samples[:, bottom]
        ratios = ratios[np.isfinite(ratios)]
        result[name] = tuple(np.percentile(ratios, [tail, 100 - tail])) if ratios.size else (None, None)
    n = difference.size
    spread = t.ppf(1 - tail / 100, n - 1) * difference.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    result["t"] = (difference.mean() - spread, difference.mean() + spread)
    return result


def old_majority_means(submitted, models: list[str]) -> dict[str, float]:
    """The baseline for `majority`: the most frequent score per task and model, ties to the lower (the old rule)."""
    tally = submitted.groupby(["task_id", "model", "score"]).size().rename("votes").reset_index()
    tally = tally.sort_values(["task_id", "model", "votes", "score"], ascending=[True, True, False, True])
    mode = tally.drop_duplicates(["task_id", "model"]).pivot(index="task_id", columns="model", values="score")
    return mode.reindex(columns=models).dropna().mean().to_dict()


def verdict(population: Population, seed: int) -> dict:
    return run(simulate(population, seed=seed))


def stale(population: Population, seed: int) -> dict:
    study = simulate(population, seed=seed)
    return {"before": run(study), "after": run(regenerate_lowest(study, model="a", count=40))}


def majority(population: Population, seed: int) -> dict:
    study = simulate(population, seed=seed)
    by_mean = analyze_study(study)
    return {
        "mean": summary(study, by_mean),
        "majority": run(study, aggregate="majority"),
        "old_majority": old_majority_means(by_mean.submitted, study.compare),
    }


def excluded(population: Population, seed: int) -> dict:
    study = simulate(population, seed=seed)
    return {"all": run(study), "excluded": run(study, exclude_annotators=sorted(study.bad))}


@dataclass(frozen=True)
class Cell:
    population: Population
    replicates: int
    measure: Callable[[Population, int], dict] = verdict


CELLS = {
    "gap-30": Cell(dataclasses.replace(BASE, tasks=30), 1000),
    "gap-200": Cell(BASE, 1000),
    "gap-1000": Cell(dataclasses.replace(BASE, tasks=1000), 400),
    "null-200": Cell(dataclasses.replace(BASE, means=EQUAL), 1000),
    "null3-200": Cell(dataclasses.replace(BASE, means={**EQUAL, "c": 3.75}), 500),
    "sweep-30": Cell(
        Population(tasks=30, means={"a": 6.0, "b": 1.0}, annotators={"x": Annotator(noise=0.0)}, task_sd=0.0), 1
    ),
    "position-1000": Cell(
        dataclasses.replace(
            TWO_OF_THREE,
            tasks=1000,
            means={"a": 3.5, "b": 3.0},
            annotators={**CAREFUL, "h3": Annotator()},
            position_bias={2: 1.0},
        ),
        300,
    ),
    "confounded-20": Cell(
        dataclasses.replace(BASE, tasks=20, means={"a": 5.0, "b": 3.0}, annotators={**CAREFUL, "h3": Annotator()}),
        400,
    ),
    "random-200": Cell(
        dataclasses.replace(TWO_OF_THREE, annotators={**CAREFUL, "clicker": Annotator(kind="random")}), 300, excluded
    ),
    "adversarial-200": Cell(
        dataclasses.replace(TWO_OF_THREE, annotators={**CAREFUL, "contrarian": Annotator(kind="adversarial")}), 200
    ),
    "honest-200": Cell(TWO_OF_THREE, 400),
    "noisy-honest-200": Cell(
        dataclasses.replace(
            TWO_OF_THREE, task_sd=0.5, annotators={n: Annotator(noise=2.0) for n in ("n1", "n2", "n3")}
        ),
        200,
    ),
    "stale-400": Cell(dataclasses.replace(BASE, tasks=400, means={"a": 4.0, "b": 4.0}), 300, stale),
    "majority-2": Cell(
        dataclasses.replace(BASE, annotators=dict(list(HONEST.items())[1:]), annotators_per_task=None), 300, majority
    ),
    "majority-3": Cell(dataclasses.replace(BASE, annotators_per_task=None), 300, majority),
    "style-200": Cell(dataclasses.replace(BASE, means=EQUAL, styles=style(10, 30), length_reward=2.5), 300),
    "style-far-200": Cell(dataclasses.replace(BASE, means=EQUAL, styles=style(5, 60), length_reward=1.0), 200),
}


def suggested_tasks() -> int:
    """How many tasks analyze says 80% power at a 0.5-point gap needs (`tasks_for_power`), from the per-task spread of
    one large study of the 200-task cells' population: the "about N more tasks" the verdict suggests."""
    study = simulate(dataclasses.replace(BASE, tasks=20_000), seed=10**6)
    return analyze_study(study).metrics["pairwise"]["a_vs_b"]["tasks_for_power"]


def replicate(job: tuple[str, int]) -> tuple[str, dict]:
    name, seed = job
    cell = CELLS[name]
    return name, cell.measure(cell.population, seed)


def rate(flags: list[bool]) -> tuple[float, float]:
    """A share and its binomial standard error."""
    share = float(np.mean(flags)) if flags else math.nan
    return share, math.sqrt(share * (1 - share) / max(len(flags), 1))


def pct(flags: list[bool]) -> str:
    share, se = rate(flags)
    return f"{100 * share:.1f}% ±{100 * se:.1f}"


def covers(interval: tuple, truth: float) -> bool:
    low, high = interval
    return low is not None and high is not None and low - 1e-9 <= truth <= high + 1e-9


def coverage_figure(label: str, runs: list[dict], interval, truth, baselines: dict | str) -> Figure:
    """`baselines`: other intervals of each run by name, or what to say when there is none."""
    flags = [covers(interval(r), truth(r)) for r in runs]
    if isinstance(baselines, dict):
        shares = {name: np.mean([covers(b(r), truth(r)) for r in runs]) for name, b in baselines.items()}
        baselines = ", ".join(f"{name} {100 * value:.1f}%" for name, value in shares.items())
    share, _ = rate(flags)
    return Figure(label, pct(flags), "93-97%", baselines, 0.93 <= share <= 0.97)


def at_most(label: str, flags: list[bool], limit: float, baseline: str) -> Figure:
    share, _ = rate(flags)
    slack = 2 * math.sqrt(limit * (1 - limit) / len(flags))
    return Figure(label, pct(flags), f"<= {100 * limit:g}%", baseline, share <= limit + slack)


def at_least(label: str, flags: list[bool], limit: float, baseline: str) -> Figure:
    share, _ = rate(flags)
    slack = 2 * math.sqrt(limit * (1 - limit) / len(flags))
    return Figure(label, pct(flags), f">= {100 * limit:g}%", baseline, share >= limit - slack)


def pair_interval(key: str = "") -> Callable[[dict], tuple]:
    prefix = f"{key}_" if key else ""
    return lambda r: (r["pair"][f"{prefix}ci_low"], r["pair"][f"{prefix}ci_high"])


def figures(results: dict[str, list[dict]]) -> list[Figure]:
    out = []
    truth = lambda r: r["truth"]  # noqa: E731
    for n in (30, 200, 1000):
        runs = results[f"gap-{n}"]
        out.append(
            coverage_figure(
                f"paired difference coverage, {n} tasks",
                runs,
                pair_interval(),
                truth,
                {"percentile": lambda r: r["percentile"]["difference"], "t": lambda r: r["percentile"]["t"]},
            )
        )
    gap = results["gap-200"]
    out.append(
        at_least(
            "power: 200 tasks, noise 1.5, gap 0.5",
            [r["pair"]["decided"] for r in gap],
            0.85,
            f"intervals apart {pct([r['apart'] for r in gap])}",
        )
    )
    suggested = results["power-suggested"]
    share, se = rate([r["pair"]["decided"] for r in suggested])
    out.append(
        Figure(
            "power at the tasks analyze asks for 80% power",
            pct([r["pair"]["decided"] for r in suggested]),
            "75-85%",
            f"{np.mean([r['pair']['tasks'] for r in suggested]):.0f} complete tasks on average",
            abs(share - 0.8) <= 0.05 + 2 * se,
        )
    )
    out.append(
        Figure(
            "decided while its CI holds 0 (or not, while it excludes 0)",
            pct([r["pair"]["decided"] != (r["pair"]["ci_low"] > 0 or r["pair"]["ci_high"] < 0) for r in gap]),
            "-",
            "-",
            None,
        )
    )
    null = results["null-200"]
    out.append(
        at_most(
            "false decided, no difference, 200 tasks",
            [r["pair"]["decided"] for r in null],
            0.05,
            f"intervals apart {pct([r['apart'] for r in null])}",
        )
    )
    null3 = results["null3-200"]
    out.append(
        at_most(
            "any pair falsely decided, 3 equal models (Holm)",
            [r["any_decided"] for r in null3],
            0.05,
            f"unadjusted p {pct([r['any_raw'] for r in null3])}",
        )
    )
    sweep = results["sweep-30"][0]["pair"]
    sweep_base = results["sweep-30"][0]["percentile"]
    out.append(
        Figure(
            "30 of 30 won: win_ci_low / decisive_ci_low",
            f"{sweep['win_ci_low']:.3f} / {sweep['decisive_ci_low']:.3f}",
            "<= 0.89",
            f"percentile {sweep_base['win'][0]:.3f} / {sweep_base['decisive'][0]:.3f}",
            sweep["win"] == 1 and sweep["win_ci_low"] <= 0.89 and sweep["decisive_ci_low"] <= 0.89,
        )
    )
    rates = outcome_rates(CELLS["gap-30"].population, tie_margin=PARAMS.tie_margin)["a_vs_b"]
    truths = {"win": rates[0], "tie": rates[1], "decisive": rates[0] / (rates[0] + rates[2])}
    for name, value in truths.items():
        out.append(
            coverage_figure(
                f"{name} rate coverage (Wilson), 30 tasks",
                results["gap-30"],
                pair_interval(name),
                lambda r, value=value: value,
                {"percentile": lambda r, name=name: r["percentile"][name]},
            )
        )
    out.extend(position_figures(results))
    out.extend(annotator_figures(results))
    before = [r["before"] for r in results["stale-400"]]
    after = [r["after"] for r in results["stale-400"]]
    out.append(
        at_most(
            "stale: A's 40 lowest of 400 regenerated, false decided",
            [r["pair"]["decided"] for r in after],
            0.05,
            f"before {pct([r['pair']['decided'] for r in before])}",
        )
    )
    out.append(
        Figure(
            "stale: mean difference A - B (truth 0)",
            f"{np.mean([r['pair']['difference'] for r in after]):+.3f}",
            "-",
            f"before {np.mean([r['pair']['difference'] for r in before]):+.3f}",
            None,
        )
    )
    for raters in (2, 3):
        runs = results[f"majority-{raters}"]
        new = [np.mean([r["majority"]["means"][m] - r["mean"]["means"][m] for m in r["mean"]["means"]]) for r in runs]
        old = [np.mean([r["old_majority"][m] - r["mean"]["means"][m] for m in r["mean"]["means"]]) for r in runs]
        out.append(
            Figure(
                f"majority minus mean, {raters} raters of noise 1.5",
                f"{np.mean(new):+.3f}",
                "|x| <= 0.1",
                f"ties to the lower {np.mean(old):+.3f}",
                abs(float(np.mean(new))) <= 0.1,
            )
        )
    out.extend(style_figures(results))
    return out


def position_figures(results: dict[str, list[dict]]) -> list[Figure]:
    runs = results["position-1000"]
    estimates = np.array([r["position"][0] for r in runs])
    raw = np.array([r["raw_position"] for r in runs])
    out = [
        at_least(
            "position +1 at 1000 tasks: within 0.1",
            list(np.abs(estimates - 1.0) <= 0.1),
            0.95,
            f"raw means {pct(list(np.abs(raw - 1.0) <= 0.1))}",
        ),
        coverage_figure(
            "position effect coverage, 1000 tasks",
            runs,
            lambda r: r["position"][1:],
            lambda r: r["position_truth"],
            "raw means: no interval",
        ),
    ]
    confounded = results["confounded-20"]
    within = np.sqrt(np.mean([r["position"][0] ** 2 for r in confounded]))
    raw = np.sqrt(np.mean([r["raw_position"] ** 2 for r in confounded]))
    out.append(
        Figure(
            "no position bias, 20 tasks, 2-point gap: RMS effect",
            f"{within:.3f}",
            "< raw",
            f"raw means {raw:.3f}",
            bool(within < raw),
        )
    )
    return out


def annotator_figures(results: dict[str, list[dict]]) -> list[Figure]:
    random_runs = results["random-200"]
    out = [
        at_least(
            "random annotator among 3 (2 per task) flagged",
            [bool(r["all"]["flagged"]["clicker"]) for r in random_runs],
            0.95,
            "-",
        ),
        at_most(
            "honest annotators flagged beside it",
            [bool(r["all"]["flagged"][h]) for r in random_runs for h in CAREFUL],
            0.05,
            "-",
        ),
    ]
    contrarian = results["adversarial-200"]
    out.append(
        at_least(
            "adversarial annotator flagged as adversarial",
            [(r["flagged"]["contrarian"] or "").startswith("adversarial") for r in contrarian],
            0.95,
            "-",
        )
    )
    honest = results["honest-200"]
    out.append(
        at_most(
            "honest annotators flagged, 2 of 3 per task, noise 1.5",
            [bool(flag) for r in honest for flag in r["flagged"].values()],
            0.05,
            f"agreement {mean_agreement(honest):.2f} on average",
        )
    )
    noisy = results["noisy-honest-200"]
    out.append(
        Figure(
            "honest annotators flagged, noise 2, task sd 0.5",
            pct([bool(flag) for r in noisy for flag in r["flagged"].values()]),
            "-",
            f"agreement {mean_agreement(noisy):.2f} on average",
            None,
        )
    )
    honest_only = dataclasses.replace(CELLS["random-200"].population, annotators=CAREFUL)
    means = expected_scores(honest_only).mean(axis=(1, 2))
    out.append(
        coverage_figure(
            "random annotator excluded: difference coverage",
            [r["excluded"] for r in random_runs],
            pair_interval(),
            lambda r: float(means[0] - means[1]),
            {"percentile": lambda r: r["percentile"]["difference"]},
        )
    )
    return out


def mean_agreement(runs: list[dict]) -> float:
    return float(np.mean([a for r in runs for a in r["agreement"].values() if a is not None]))


def style_figures(results: dict[str, list[dict]]) -> list[Figure]:
    out = []
    for name, lengths in (("style-200", "10 vs 30 lines"), ("style-far-200", "5 vs 60 lines")):
        runs = results[name]
        styled = [r["pair"]["style_controlled"] for r in runs]
        out += [
            coverage_figure(
                f"style, {lengths}: controlled coverage",
                runs,
                lambda r: (r["pair"]["style_controlled"]["ci_low"], r["pair"]["style_controlled"]["ci_high"]),
                lambda r: r["quality_truth"],
                {"raw": pair_interval()},
            ),
            at_most(
                f"style, {lengths}: decided at equal style",
                [s["ci_low"] > 0 or s["ci_high"] < 0 for s in styled],
                0.05,
                f"raw {pct([r['pair']['decided'] for r in runs])}",
            ),
            Figure(
                f"style, {lengths}: mean difference (truth 0)",
                f"{np.mean([s['difference'] for s in styled]):+.3f}",
                "-",
                f"raw {np.mean([r['pair']['difference'] for r in runs]):+.3f} (truth {runs[0]['truth']:+.3f})",
                None,
            ),
        ]
    out.append(
        coverage_figure(
            "style control keeps a real gap (equal styles)",
            results["gap-200"],
            lambda r: (r["pair"]["style_controlled"]["ci_low"], r["pair"]["style_controlled"]["ci_high"]),
            lambda r: r["truth"],
            {"raw": pair_interval()},
        )
    )
    return out


def report(rows: list[Figure], results: dict[str, list[dict]], seconds: float, workers: int) -> None:
    runs = {name: len(v) for name, v in results.items()}
    print(f"\n{sum(runs.values())} simulated studies in {seconds / 60:.1f} min on {workers} workers; runs per cell:")
    print("  " + ", ".join(f"{name} {count}" for name, count in runs.items()))
    print_figures(rows, label_width=58, target_width=11, baseline_width=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every cell's replicates")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    needed = suggested_tasks()  # complete tasks; with one annotator each, a tenth are drafts or discards
    CELLS["power-suggested"] = Cell(dataclasses.replace(BASE, tasks=round(needed / 0.9)), 600)
    jobs = [
        (name, seed)
        for name, cell in CELLS.items()
        for seed in range(max(1, round(cell.replicates * args.scale)) if cell.replicates > 1 else 1)
    ]
    results: dict[str, list[dict]] = {name: [] for name in CELLS}
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for name, result in tqdm(pool.imap_unordered(replicate, jobs, chunksize=4), total=len(jobs), unit="study"):
            results[name].append(result)
    rows = figures(results)
    report(rows, results, time.perf_counter() - began, args.workers)
    exit_on_targets(rows)


if __name__ == "__main__":
    main()
