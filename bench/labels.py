"""Benchmark: how many human labels does a judge save? Judge scores on every task plus humans on some
(prediction-powered inference), tasks for humans chosen at random or where the judge is least sure (active), and
the labels until an anytime-valid confidence sequence decides.

Every replicate draws a study of 1,000 tasks from `simulated_study.JUDGED_PAIR` (two models 0.3 apart,
each answer an own quality of sd 1 that annotators and judge both see, one annotator of three per task, noise sd
0.4), with a judge whose per-task differences correlate about 0.8, 0.5 or 0.2 with the humans' (biased towards a).
Two kinds of judge: `even`, whose noise is the same on every task (the test's judges), and `blind`, which on a share
of tasks cannot tell the answers apart and scores them alike (`Judge.blind_share`): its errors are largest where its
scores sit closest, which is what active selection bets on. Every estimate and draw is the library's: `ppi_mean`,
rounds.py's `judge_uncertainty`, `active_weights`, `learnt_weights` and `next_round`, judge_assisted.py's
`squared_residuals`, and round_sequence.py's sequence. Active rounds are drawn as push draws them: round 1 where the
judge is least sure, each later one from the judge's residuals against the humans on the tasks labelled so far.

1. Labels for a target width (2 models): the mean width of the pair's 95% interval over the replicates, at several
   label counts, for (a) random tasks + humans alone, (b) random tasks + PPI++, (c) active tasks (the first active round
   of 50 by which that many tasks were published, chances known) + PPI with those chances, and (d) active tasks +
   humans alone (weighted);
   the labels each needs to reach the width (a) has at 400 labels, by log-log interpolation, and the saving against
   (a). Target: (c) saves at least 40% with the 0.8 judge. Coverage of (c) is shown as a check of its validity.
2. Labels to decide (gap 0.3; 3 models: a, b, c 0.3 apart in turn): rounds of 50 tasks drawn by rounds.py's
   next_round, a look after each, until every pair's sequence (round_sequence.py, 95%, planned for all 1,000 tasks,
   as push and analyze run it) excludes 0: (a) random rounds, humans alone; (b) random rounds with the judge on every
   task (prediction-powered); (c) active rounds with the judge. A run that never decides counts all 1,000 labels
   (the share is shown). With no true difference (2 models), the share of runs falsely decided at some look, for
   each of (a)-(c): target at most 5%.

Run from the project root (about 3 minutes on 2 cores; `--scale 0.1` for a rough look):

    .venv/bin/python -m bench.labels [--scale 1.0] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import multiprocessing
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from bench.figures import Figure, exit_on_targets, print_figures
from llm_feedback.annotation.rounds import Chances, active_weights, judge_uncertainty, learnt_weights, next_round
from llm_feedback.confidence_sequence import decided
from llm_feedback.judge_assisted import squared_residuals
from llm_feedback.ppi import judge_human_correlations, ppi_mean
from llm_feedback.round_sequence import Labels, by_round, round_sequence
from llm_feedback.testing.simulated_study import (
    JUDGE_QUALITIES,
    JUDGED_PAIR,
    Judge,
    Simulated,
    per_task_scores,
    simulate,
    with_difference,
)

TASKS = 1000
CONFIDENCE = 0.95
REFERENCE = 400  # (a)'s width at this many labels is the target width
GRID = (100, 150, 200, 250, 300, 400, 500, 600, 700)
ROUND = 50
CHUNK = 20  # replicates simulated at once, as one study
SAVING = 0.40

TWO = dataclasses.replace(JUDGED_PAIR, tasks=TASKS)
GAP = with_difference(TWO, difference=0.3)
THREE = dataclasses.replace(TWO, means={"a": 4.0, "b": 3.7, "c": 3.4})
NULL = dataclasses.replace(TWO, means={"a": 3.85, "b": 3.85})
BIAS = {"a": 0.6, "b": -0.2}
JUDGES = {  # per-difference correlation about 0.8, 0.5, 0.2; `even`: the tests' judges, `blind`: calibrated alike
    **{("even", quality): judge for quality, judge in JUDGE_QUALITIES.items()},
    ("blind", "0.8"): Judge(bias=BIAS, noise=0.2, blind_share=0.1),
    ("blind", "0.5"): Judge(bias=BIAS, noise=0.35, blind_share=0.6),
    ("blind", "0.2"): Judge(bias=BIAS, noise=0.35, blind_share=0.92),
}
QUALITIES = ("0.8", "0.5", "0.2")
METHODS = {"humans": ("random", False), "random+PPI": ("random", True), "active+PPI": ("active", True)}


@dataclass(frozen=True)
class Job:
    part: str  # "width" or "decide"
    kind: str
    quality: str
    population: str  # "two", "three", "null"
    chunk: int


POPULATIONS = {"two": TWO, "gap": GAP, "three": THREE, "null": NULL}


def run(job: Job) -> tuple[Job, dict]:
    population = dataclasses.replace(
        POPULATIONS[job.population], tasks=TASKS * CHUNK, judge=JUDGES[job.kind, job.quality]
    )
    seed = zlib.crc32(repr(job).encode())  # the same seeds in every run and process
    study = simulate(population, seed=seed)
    human, judge = per_task_scores(study)
    models = study.compare
    correlations = judge_human_correlations(human=human, judge=judge)
    shape = (CHUNK, TASKS, len(models))
    human, judge = human.reshape(shape), judge.reshape(shape)
    measure = widths if job.part == "width" else labels_to_decide
    replicates = [measure(h, j, models, seed + r, study) for r, (h, j) in enumerate(zip(human, judge))]
    return job, {
        "replicates": replicates,
        "answers": correlations.answers,
        "differences": correlations.differences[(0, 1)],
    }


def active_rounds(human: np.ndarray, judge: np.ndarray, models: list[str], seed: int) -> Chances:
    """Every round of ROUND tasks drawn as push draws active rounds: round 1 where the judge is least sure, each
    later one from the judge's residuals against the humans on the tasks labelled so far (rounds.py)."""
    ids = [f"task-{i:06d}" for i in range(TASKS)]
    uncertainty = judge_uncertainty(ids, models=models, judgments=judgments(ids, models, judge))
    humans = pd.DataFrame(human, index=ids, columns=models)
    judged = pd.DataFrame(judge, index=ids, columns=models)
    chances: Chances = {}
    for number in range(1, math.ceil(TASKS / ROUND) + 1):
        if chances:
            labelled = sorted(chances)
            residuals = squared_residuals(humans.loc[labelled], judged.loc[labelled], models)
            last = {task: since[-1] for task, (_, since) in chances.items()}
            weights = learnt_weights(uncertainty, residuals=residuals, chances=last)
        else:
            weights = active_weights(uncertainty)
        _, chances = next_round(chances, weights=weights, number=number, round_size=ROUND, seed=seed)
    return chances


def widths(human: np.ndarray, judge: np.ndarray, models: list[str], seed: int, study: Simulated) -> dict:
    """Per label count of GRID: the interval widths of (a)-(d), the labels (d) and (c) drew, and whether (c) covers.
    (c) and (d) take the first active round by which at least that many tasks were published."""
    rng = np.random.default_rng(seed)
    truth = study.difference["a_vs_b"]
    dh, dj = human[:, 0] - human[:, 1], judge[:, 0] - judge[:, 1]
    chances = active_rounds(human, judge, models, seed)
    tasks = sorted(chances)
    order = np.array([int(task[5:]) for task in tasks])
    first, matrix = by_round(chances, tasks=tasks, last=math.ceil(TASKS / ROUND))
    published = np.array([np.sum(first <= r) for r in range(1, matrix.shape[1] + 1)])
    out = {}
    for n in GRID:
        chosen = rng.choice(TASKS, n, replace=False)
        random = ppi_mean(human=dh[chosen], judge_labeled=dj[chosen], judge_all=dj, confidence=CONFIDENCE)
        by = int(np.argmax(published >= n)) + 1
        drawn = first <= by
        active = ppi_mean(
            human=dh[order[drawn]],
            judge_labeled=dj[order[drawn]],
            judge_all=dj,
            confidence=CONFIDENCE,
            sampling_probability=matrix[drawn, by - 1],
        )
        out[n] = {
            "a": random.human.high - random.human.low,
            "b": random.high - random.low,
            "c": active.high - active.low,
            "d": active.human.high - active.human.low,
            "active_labels": int(drawn.sum()),
            "covered": active.low <= truth <= active.high,
        }
    return out


def judgments(ids: list[str], models: list[str], judge: np.ndarray) -> pa.Table:
    """The judge's scores as the judgments artifact holds them, for rounds.py's judge_uncertainty."""
    return pa.table(
        {
            "task_id": [t for t in ids for _ in models],
            "model": models * len(ids),
            "score": judge.reshape(-1),
        }
    )


def labels_to_decide(human: np.ndarray, judge: np.ndarray, models: list[str], seed: int, study: Simulated) -> dict:
    """Labels until every pair is decided by round_sequence.py's sequence, over rounds of ROUND tasks drawn by
    rounds.py: (a) random rounds, humans alone (push's rule without a judge); (b) random rounds with the judge;
    (c) active rounds with the judge; TASKS when never."""
    ids = [f"task-{i:06d}" for i in range(TASKS)]
    last = math.ceil(TASKS / ROUND)
    even: Chances = {}
    for number in range(1, last + 1):
        _, even = next_round(even, weights=dict.fromkeys(ids, 1.0), number=number, round_size=ROUND, seed=seed)
    drawn = {}
    for select, chances in (("random", even), ("active", active_rounds(human, judge, models, seed))):
        tasks = sorted(chances)
        first, matrix = by_round(chances, tasks=tasks, last=last)
        drawn[select] = (np.array([int(task[5:]) for task in tasks]), first, matrix)
    result = {}
    for name, (select, assisted) in METHODS.items():
        order, first, matrix = drawn[select]
        done = np.ones(last, dtype=bool)
        for a, b in itertools.combinations(range(len(models)), 2):
            dh, dj = human[:, a] - human[:, b], judge[:, a] - judge[:, b]
            labels = Labels(human=dh[order], judge=dj[order] if assisted else None, first_round=first, chances=matrix)
            looks = round_sequence(
                labels,
                judge_mean=float(dj.mean()) if assisted else None,
                tasks=TASKS,
                confidence=CONFIDENCE,
                planned_tasks=TASKS,
            )
            done &= np.array([decided(interval) for interval in looks])
        hit = np.flatnonzero(done)
        result[name] = (int(np.sum(first <= hit[0] + 1)), True) if hit.size else (TASKS, False)
    return result


def needed(labels: np.ndarray, width: np.ndarray, target: float) -> float:
    """Labels at which the mean width reaches `target`, interpolating log width on log labels (width ~ 1/sqrt n),
    extrapolating along the end segments beyond the grid."""
    x, y, goal = np.log(labels), np.log(width), math.log(target)
    if goal > y[0]:
        x, y = x[:2], y[:2]
    elif goal < y[-1]:
        x, y = x[-2:], y[-2:]
    else:
        return float(math.exp(np.interp(goal, y[::-1], x[::-1])))
    return float(math.exp(x[0] + (goal - y[0]) * (x[1] - x[0]) / (y[1] - y[0])))


def width_figures(results: dict) -> tuple[list[Figure], list[str]]:
    rows, lines = [], []
    header = f"{'judge':12} {'rho answers/diffs':18} " + " ".join(f"{m:>8}" for m in ("(a)", "(b)", "(c)", "(d)"))
    lines += ["labels to reach (a)'s width at 400 labels (saving vs (a)); (c) coverage", header]
    for kind, quality in JUDGES:
        chunks = results.get(("width", kind, quality, "two"), [])
        reps = [r for c in chunks for r in c["replicates"]]
        if not reps:
            continue
        answers = np.mean([c["answers"] for c in chunks])
        diffs = np.mean([c["differences"] for c in chunks])
        mean = {m: np.array([np.mean([r[n][m] for r in reps]) for n in GRID]) for m in "abcd"}
        drawn = np.array([np.mean([r[n]["active_labels"] for r in reps]) for n in GRID])
        target = float(mean["a"][GRID.index(REFERENCE)])
        counts = {m: needed(np.array(GRID, float) if m in "ab" else drawn, mean[m], target) for m in "abcd"}
        covered = np.mean([r[n]["covered"] for r in reps for n in GRID])
        cells = " ".join(f"{counts[m]:5.0f} {1 - counts[m] / counts['a']:+4.0%}" for m in "abcd")
        lines.append(f"{kind + ' ' + quality:12} {answers:.2f} / {diffs:.2f}        {cells}  cover {covered:.1%}")
        saving = 1 - counts["c"] / counts["a"]
        rows.append(
            Figure(
                f"{kind} judge {quality} (diffs {diffs:.2f}): active + PPI saving",
                f"{saving:.0%} ({counts['c']:.0f})",
                f">= {SAVING:.0%}" if quality == "0.8" else "-",
                f"random+PPI {1 - counts['b'] / counts['a']:.0%} ({counts['b']:.0f}), (a) {counts['a']:.0f}",
                saving >= SAVING if quality == "0.8" else None,
            )
        )
        rows.append(
            Figure(
                f"{kind} judge {quality}: active + PPI coverage",
                f"{covered:.1%}",
                "93-97%",
                f"{len(reps)} runs x {len(GRID)} counts",
                0.93 - 2 * math.sqrt(0.05 * 0.95 / len(reps))
                <= covered
                <= 0.97 + 2 * math.sqrt(0.05 * 0.95 / len(reps)),
            )
        )
    return rows, lines


def decide_figures(results: dict) -> list[Figure]:
    rows = []
    for population, label in (("gap", "2 models, gap 0.3"), ("three", "3 models, 0.3 apart")):
        for quality in QUALITIES:
            chunks = results.get(("decide", "even", quality, population), [])
            reps = [r for c in chunks for r in c["replicates"]]
            if not reps:
                continue
            human = np.mean([r["humans"][0] for r in reps])
            undecided = np.mean([not r["humans"][1] for r in reps])
            diffs = np.mean([c["differences"] for c in chunks])
            for name in ("random+PPI", "active+PPI"):
                labels = np.mean([r[name][0] for r in reps])
                saving = 1 - labels / human
                target = SAVING if quality == "0.8" and population == "gap" else 0.0
                rows.append(
                    Figure(
                        f"labels to decide, {label}, judge {quality} (diffs {diffs:.2f}), {name}",
                        f"{labels:.0f} ({saving:+.0%})",
                        f">= {target:.0%} fewer" if target else "<= humans",
                        f"humans {human:.0f}; never {undecided:.0%}/{np.mean([not r[name][1] for r in reps]):.0%}",
                        bool(saving >= target) if target else bool(labels <= human * 1.02),
                    )
                )
    for quality in QUALITIES:
        chunks = results.get(("decide", "even", quality, "null"), [])
        reps = [r for c in chunks for r in c["replicates"]]
        if not reps:
            continue
        for name in METHODS:
            flags = [r[name][1] for r in reps]
            share = float(np.mean(flags))
            slack = 2 * math.sqrt(0.05 * 0.95 / len(flags))
            rows.append(
                Figure(
                    f"no difference, 20 looks, {name}, judge {quality}: false decided",
                    f"{share:.1%}",
                    "<= 5%",
                    f"{len(flags)} runs",
                    share <= 0.05 + slack,
                )
            )
    return rows


def jobs(scale: float) -> list[Job]:
    width_chunks = max(1, round(20 * scale))  # x CHUNK replicates
    decide_chunks = max(1, round(20 * scale))
    out = [Job("width", kind, quality, "two", c) for kind, quality in JUDGES for c in range(width_chunks)]
    out += [
        Job("decide", "even", quality, population, c)
        for quality in QUALITIES
        for population in ("gap", "three", "null")
        for c in range(decide_chunks)
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every cell's replicates")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    todo = jobs(args.scale)
    results: dict = {}
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for job, result in tqdm(pool.imap_unordered(run, todo), total=len(todo), unit="chunk"):
            results.setdefault((job.part, job.kind, job.quality, job.population), []).append(result)
    rows, lines = width_figures(results)
    rows += decide_figures(results)
    print(f"\n{len(todo) * CHUNK} simulated studies of {TASKS} tasks in {(time.perf_counter() - began) / 60:.1f} min")
    print("\n".join(lines) + "\n")
    print_figures(rows, label_width=68, target_width=8, baseline_width=40)
    exit_on_targets(rows)


if __name__ == "__main__":
    main()
