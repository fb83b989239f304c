"""A generative model of an annotation study with a known truth, to show that analyze's verdict is calibrated.

Each task has an effect shared by every model's answer (some tasks are harder), each answer an effect of its own (0
unless `answer_sd` is set), each annotator a leniency and a noise level (or is random, or adversarial), each display
position an additive bias, and answers a length that annotators may reward. A score is clip(round(true mean + task
effect + answer effect + leniency + position effect + length reward + noise), 0, 7). A judge, when there is one, scores
every answer from the same task and answer effects, with a bias and a noise of its own. `simulate` writes the
annotations, generations and judgments artifacts exactly as pull, generate and judge do, and computes what analyze
should find: the expected observed scores, which (because of the rounding and the clipping at 0 and 7) are the models'
true means only approximately, so the truths here are exact expectations of what is observed, not the inputs.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import nbinom, norm

from llm_feedback.annotation.values import STATUSES
from llm_feedback.artifacts import JUDGMENTS, text_sha
from llm_feedback.testing.synthetic_annotations import annotations_table, generations_table

TOP = 7  # the rating scale is 0..TOP
LINE = "x = x + 1"  # every body line of an answer: its length in characters and tokens follows its lines
BLOCK = "```python\npass\n```"
CHUNK = 200_000  # tasks drawn at once when estimating outcome rates
SHAPE = 2  # of the negative binomial behind answer lengths: a spread wide enough for style control to see
JUDGE_STREAM = 1  # the judge draws its noise from its own stream, so adding a judge changes no human score


@dataclass(frozen=True, kw_only=True)
class Annotator:
    """ "honest": the model above; "random": uniform 0..7 whatever the answer; "adversarial": 7 minus the honest
    score."""

    leniency: float = 0.0
    noise: float = 1.0
    kind: Literal["honest", "random", "adversarial"] = "honest"


@dataclass(frozen=True, kw_only=True)
class Style:
    """A model's answers: lines of text (1 + a negative binomial with this mean minus one) and fenced code blocks
    (Poisson)."""

    lines: float = 4.0
    code_blocks: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Judge:
    """An LLM judge that scores every answer alone on the annotators' 0-7 scale: clip(round(true mean + bias of the
    model + task_weight * task effect + answer_weight * answer effect + length reward + noise), 0, 7).
    `task_weight` and `answer_weight`: how much of the task's and the answer's own effect it sees (1: as annotators
    do, 0: blind to it). Task effects cancel in a paired difference, so what PPI gains on a difference rests on
    `answer_weight` and `noise` against the population's `answer_sd`; a judge with both weights 0 is useless.
    `blind_share`: the share of tasks whose answers the judge cannot tell apart: there it sees neither answer's own
    effect and its noise is one draw for the whole task, so its scores differ by its biases alone. Its errors are
    then largest where its scores sit closest, the case in which choosing the close comparisons for humans pays."""

    name: str = "judge"
    bias: dict[str, float] = field(default_factory=dict)
    noise: float = 1.0
    task_weight: float = 1.0
    answer_weight: float = 1.0
    length_reward: float = 0.0  # points per 100 lines of an answer
    blind_share: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Population:
    """Who is rated and who rates. `means` are the models' true mean qualities on the 0-7 scale, in compare order.
    `annotators_per_task`: how many annotators, drawn at random from the pool, rate each task (None: all of them).
    `position_bias`: points added at each display position (absent: 0). `draft_rate` and `discard_rate`: the share of
    responses (one annotator on one record) left as a draft or discarded; their scores (7 minus the honest one) must
    not count. `length_reward`: points an honest annotator adds per 100 lines of an answer. `answer_sd`: the sd of each
    answer's own quality around its model's mean, seen by every annotator of it (and by the judge). `judge`: scores
    every answer when given."""

    tasks: int
    means: dict[str, float]
    annotators: dict[str, Annotator]
    task_sd: float = 1.0
    annotators_per_task: int | None = None
    position_bias: dict[int, float] = field(default_factory=dict)
    draft_rate: float = 0.0
    discard_rate: float = 0.0
    styles: dict[str, Style] = field(default_factory=dict)
    length_reward: float = 0.0
    answer_sd: float = 0.0
    judge: Judge | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.draft_rate + self.discard_rate < 1:
            raise ValueError("draft_rate + discard_rate must be in [0, 1)")
        if self.annotators_per_task is not None and not 1 <= self.annotators_per_task <= len(self.annotators):
            raise ValueError(f"annotators_per_task must be 1..{len(self.annotators)} (the pool) or None")

    @property
    def models(self) -> list[str]:
        return list(self.means)

    def style(self, model: str) -> Style:
        return self.styles.get(model, Style())


@dataclass(frozen=True)
class Simulated:
    """The two artifacts, and what analyze should find in them. Pairs are keyed `a_vs_b`, a before b in compare
    order. `means`: each model's expected observed (aggregated by mean) score; `difference`: the expected per-task
    difference of a pair; `quality_difference`: the same had length earned nothing (what a style-controlled
    difference estimates); `position_effect`: the expected score at each position from 2 on, minus at position 1,
    within models; `bad`: the random and adversarial annotators; `judgments`: the judge's scores of every answer
    (None without a judge)."""

    annotations: pa.Table
    generations: pa.Table
    compare: list[str]
    means: dict[str, float]
    difference: dict[str, float]
    quality_difference: dict[str, float]
    position_effect: dict[int, float]
    bad: frozenset[str]
    judgments: pa.Table | None = None


# The population of the judge-assisted studies (tests of ppi.py and round_sequence.py, bench/labels.py): two models
# 0.3 apart; each answer has its own quality (sd 1) that annotators and judge both see; one annotator per task from
# three of different leniency.
JUDGED_PAIR = Population(
    tasks=1,
    means={"a": 4.0, "b": 3.7},
    annotators={
        "harsh": Annotator(leniency=-0.5, noise=0.4),
        "fair": Annotator(noise=0.4),
        "lenient": Annotator(leniency=0.5, noise=0.4),
    },
    annotators_per_task=1,
    task_sd=1.0,
    answer_sd=1.0,
)
# Judges of JUDGED_PAIR whose per-task differences correlate about 0.8, 0.5 and 0.2 with the humans', each with a
# bias of its own.
JUDGE_QUALITIES = {
    "0.8": Judge(bias={"a": 0.6, "b": -0.2}, noise=0.35),
    "0.5": Judge(bias={"a": 0.6}, noise=1.45),
    "0.2": Judge(bias={"a": 0.6}, noise=4.0),
}


def per_task_scores(study: Simulated) -> tuple[np.ndarray, np.ndarray]:
    """(tasks, models) the mean submitted human scores and the judge's scores, tasks in order."""
    rows = study.annotations.to_pandas()
    rows = rows[rows["status"] == "submitted"]
    human = rows.groupby(["task_id", "model"])["score"].mean().unstack()[study.compare]
    judged = study.judgments.to_pandas().pivot(index="task_id", columns="model", values="score")
    return human.to_numpy(float), judged.loc[human.index, study.compare].to_numpy(float)


def simulate(population: Population, *, seed: int | None = None) -> Simulated:
    """One study drawn from `population` (with `seed` in place of the population's own, for replicates)."""
    seed = population.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    models, pool = population.models, list(population.annotators)
    n, m = population.tasks, len(models)
    draw = _draw(population, rng, n)
    lines, blocks, order, k = draw.lines, draw.blocks, draw.order, draw.chosen.shape[1]

    names = _names("task", n)
    responses = [
        "\n".join([f"# {model} answers {task}", *[LINE] * int(lines[t, j]), *[BLOCK] * int(blocks[t, j])])
        for j, model in enumerate(models)
        for t, task in enumerate(names.to_pylist())
    ]  # model-major, as generations_table takes them
    shas = pa.array([text_sha(r) for r in responses])
    generations = generations_table(
        names.take(pa.array(np.tile(np.arange(n), m))),
        pa.array(models).take(pa.array(np.repeat(np.arange(m), n))),
        responses,
        completion_tokens=(8 + 5 * lines + 4 * blocks).T.reshape(-1),
    )

    task_of_row = np.repeat(np.arange(n), k * m)
    model_of_row = np.repeat(order[:, None, :], k, axis=1).reshape(-1)
    annotations = annotations_table(
        record_id=_names("record", n).take(pa.array(task_of_row)),
        task_id=names.take(pa.array(task_of_row)),
        annotator=pa.array(pool).take(pa.array(np.repeat(draw.chosen.reshape(-1), m))),
        model=pa.array(models).take(pa.array(model_of_row)),
        position=np.tile(np.arange(1, m + 1), n * k),
        response_sha=shas.take(pa.array(model_of_row * n + task_of_row)),
        score=draw.scores.reshape(-1),
        status=pa.array(STATUSES).take(pa.array(np.repeat(draw.status.reshape(-1), m))),
    )
    judgments = None
    if population.judge is not None:
        judgments = _judgments(population.judge, population, draw, names, np.random.default_rng([JUDGE_STREAM, seed]))
    return _with_truths(population, annotations, generations, judgments)


def with_difference(population: Population, *, difference: float) -> Population:
    """The population with its first model's true mean moved until the expected observed difference between its first
    two models is `difference` (rounding and clipping at 0 and 7 make it a little smaller than the gap of the true
    means)."""
    first, second = population.models[:2]
    low, high = population.means[second] - abs(difference) - 1, population.means[second] + abs(difference) + 1

    def observed(mean: float) -> float:
        means = expected_scores(dataclasses.replace(population, means={**population.means, first: mean}))
        return float(means[0].mean() - means[1].mean())

    for _ in range(50):  # bisection: the observed difference grows with the first model's mean
        middle = (low + high) / 2
        low, high = (middle, high) if observed(middle) < difference else (low, middle)
    if abs(observed(low) - difference) > 1e-6:
        raise ValueError(f"no true mean of {first} gives an observed difference of {difference} on the 0-{TOP} scale")
    return dataclasses.replace(population, means={**population.means, first: (low + high) / 2})


def regenerate_lowest(simulated: Simulated, *, model: str, count: int) -> Simulated:
    """The study after `model`'s `count` lowest-rated answers (by their mean submitted score) were generated anew,
    once rated: their scores are stale now. The truths are unchanged: the new answers are as good as the old ones."""
    rows = simulated.annotations.to_pandas()
    rated = rows[(rows["model"] == model) & (rows["status"] == "submitted")]
    lowest = rated.groupby("task_id", sort=False)["score"].mean().sort_values(kind="stable").index[:count]
    generations = simulated.generations.to_pandas()
    again = (generations["model"] == model) & generations["task_id"].isin(lowest)
    generations.loc[again, "response"] += "\n# generated again"
    table = pa.Table.from_pandas(generations, schema=simulated.generations.schema, preserve_index=False)
    return dataclasses.replace(simulated, generations=table)


def expected_scores(population: Population, *, length_reward: float | None = None) -> np.ndarray:
    """(models, annotators, positions): each annotator's expected score of each model's answer at each position,
    over tasks, answer lengths and noise. An honest score is a rounded, clipped normal, whose mean is a sum of normal
    tail probabilities: E[clip(round(X), 0, 7)] = sum over j = 1..7 of P(X >= j - 1/2)."""
    reward = population.length_reward if length_reward is None else length_reward
    positions = np.array([population.position_bias.get(p, 0.0) for p in range(1, len(population.means) + 1)])
    result = []
    for model, mean in population.means.items():
        lengths, weights = _length_distribution(population.style(model))
        per_annotator = []
        for rater in population.annotators.values():
            centre = mean + rater.leniency + positions[:, None] + reward * lengths[None, :] / 100  # (positions, L)
            sd = float(np.hypot(np.hypot(rater.noise, population.task_sd), population.answer_sd))
            if sd > 0:
                honest = norm.cdf((centre[..., None] - np.arange(1, TOP + 1) + 0.5) / sd).sum(axis=-1) @ weights
            else:
                honest = np.clip(np.rint(centre), 0, TOP) @ weights
            per_annotator.append(
                {"honest": honest, "random": np.full_like(honest, TOP / 2), "adversarial": TOP - honest}[rater.kind]
            )
        result.append(per_annotator)
    return np.array(result)


def outcome_rates(population: Population, *, tie_margin: float = 0.0, draws: int = 1_000_000) -> dict[str, tuple]:
    """Per pair (a before b): the chances that a task's mean submitted score of a beats b's by more than
    `tie_margin`, ties it, or loses, over the tasks some annotator submitted; by simulation, as the distribution of a
    mean of several annotators' rounded scores has no short closed form (the standard error is below 0.001 at the
    default million draws)."""
    rng = np.random.default_rng(population.seed)
    models = population.models
    pairs = list(itertools.combinations(range(len(models)), 2))
    counts = np.zeros((len(pairs), 3))
    for size in np.diff(np.append(np.arange(0, draws, CHUNK), draws)):
        draw = _draw(population, rng, int(size))
        by_model = np.take_along_axis(draw.scores, np.argsort(draw.order, axis=1)[:, None, :], axis=2)
        submitted = draw.status == 0
        rated = submitted.sum(axis=1)
        mean = (by_model * submitted[:, :, None]).sum(axis=1)[rated > 0] / rated[rated > 0, None]
        for p, (i, j) in enumerate(pairs):
            difference = mean[:, i] - mean[:, j]
            tie = np.abs(difference) <= tie_margin + 1e-9
            counts[p] += [np.sum(~tie & (difference > 0)), np.sum(tie), np.sum(~tie & (difference < 0))]
    rates = counts / counts.sum(axis=1, keepdims=True)
    return {f"{models[i]}_vs_{models[j]}": tuple(float(r) for r in rates[p]) for p, (i, j) in enumerate(pairs)}


@dataclass(frozen=True)
class _Draw:
    lines: np.ndarray  # (tasks, models): each answer's lines
    blocks: np.ndarray  # (tasks, models): its code blocks
    order: np.ndarray  # (tasks, positions): the model shown at each position
    chosen: np.ndarray  # (tasks, k): the annotators of each task
    status: np.ndarray  # (tasks, k): index into STATUSES of each response
    scores: np.ndarray  # (tasks, k, positions)
    task: np.ndarray  # (tasks,): each task's effect
    answer: np.ndarray  # (tasks, models): each answer's own effect


def _draw(population: Population, rng: np.random.Generator, n: int) -> _Draw:
    m, raters = len(population.means), list(population.annotators.values())
    k = population.annotators_per_task or len(raters)
    lines, blocks = _styles(population, rng, n)
    order = np.argsort(rng.random((n, m)), axis=1)
    chosen = np.argsort(rng.random((n, len(raters))), axis=1)[:, :k]
    task = rng.normal(0, population.task_sd, (n, 1))
    answer = rng.normal(0, population.answer_sd, (n, m)) if population.answer_sd else np.zeros((n, m))
    latent = (
        np.array(list(population.means.values()))[order]
        + population.length_reward * np.take_along_axis(lines, order, axis=1) / 100
        + np.array([population.position_bias.get(p, 0.0) for p in range(1, m + 1)])
        + task
        + np.take_along_axis(answer, order, axis=1)
    )[:, None, :] + np.array([r.leniency for r in raters])[chosen][:, :, None]
    noise = np.array([r.noise for r in raters])[chosen][:, :, None] * rng.standard_normal((n, k, m))
    honest = np.clip(np.rint(latent + noise), 0, TOP).astype(np.int64)
    kind = np.array([r.kind for r in raters])[chosen][:, :, None]
    scores = np.where(kind == "random", rng.integers(0, TOP + 1, (n, k, m)), honest)
    scores = np.where(kind == "adversarial", TOP - honest, scores)
    draw = rng.random((n, k))
    status = np.select([draw < population.draft_rate, draw < population.draft_rate + population.discard_rate], [1, 2])
    scores = np.where(status[:, :, None] > 0, TOP - scores, scores)  # what a draft or discard holds, not to count
    return _Draw(lines, blocks, order, chosen, status, scores, task[:, 0], answer)


def _judgments(
    judge: Judge, population: Population, draw: _Draw, tasks: pa.Array, rng: np.random.Generator
) -> pa.Table:
    """The judgments artifact as the judge stage writes it: one usable score per answer, model-major."""
    models = population.models
    n, m = draw.answer.shape
    base = np.array([population.means[model] + judge.bias.get(model, 0.0) for model in models])
    quality = (
        base
        + judge.task_weight * draw.task[:, None]
        + judge.answer_weight * draw.answer
        + judge.length_reward * draw.lines / 100
        + judge.noise * rng.standard_normal((n, m))
    )
    if judge.blind_share:  # drawn after the rest, so a judge without blind tasks draws as before
        blind = rng.random(n) < judge.blind_share
        alike = (
            base
            + judge.task_weight * draw.task[:, None]
            + judge.length_reward * draw.lines / 100
            + judge.noise * rng.standard_normal((n, 1))
        )
        quality = np.where(blind[:, None], alike, quality)
    scores = pa.array(np.clip(np.rint(quality), 0, TOP).astype(np.int64).T.reshape(-1))
    task_ids = tasks.take(pa.array(np.tile(np.arange(n), m)))
    model_ids = pa.array(models).take(pa.array(np.repeat(np.arange(m), n)))
    judges = pa.array([judge.name] * (n * m), pa.string())
    table = pa.table(
        {
            "task_id": task_ids,
            "model": model_ids,
            "judge": judges,
            "score": scores,
            "rationale": pa.nulls(n * m, pa.string()),
            "error": pa.nulls(n * m, pa.string()),
            "answer": pc.binary_join_element_wise('{"total": ', pc.cast(scores, pa.string()), "}", ""),
            "request_hash": pc.binary_join_element_wise(judges, task_ids, model_ids, " "),
        }
    )
    return JUDGMENTS.validate(table, "judgments")


def _with_truths(
    population: Population, annotations: pa.Table, generations: pa.Table, judgments: pa.Table | None
) -> Simulated:
    """Under random assignment every annotator and position is equally likely for every answer (and the annotators
    behind a task's mean are exchangeable), so the expected aggregated score averages over both."""
    models = population.models
    observed = expected_scores(population)
    means = observed.mean(axis=(1, 2))
    quality = expected_scores(population, length_reward=0.0).mean(axis=(1, 2))
    pairs = list(itertools.combinations(range(len(models)), 2))
    by_position = observed.mean(axis=(0, 1))
    return Simulated(
        annotations=annotations,
        generations=generations,
        compare=models,
        means={model: float(means[i]) for i, model in enumerate(models)},
        difference={f"{models[i]}_vs_{models[j]}": float(means[i] - means[j]) for i, j in pairs},
        quality_difference={f"{models[i]}_vs_{models[j]}": float(quality[i] - quality[j]) for i, j in pairs},
        position_effect={p: float(by_position[p - 1] - by_position[0]) for p in range(2, len(models) + 1)},
        bad=frozenset(name for name, a in population.annotators.items() if a.kind != "honest"),
        judgments=judgments,
    )


def _styles(population: Population, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lines and code blocks of every answer, (tasks, models)."""
    lines, blocks = [], []
    for model in population.models:
        style = population.style(model)
        lines.append(1 + rng.negative_binomial(SHAPE, _length_p(style), n))
        blocks.append(rng.poisson(style.code_blocks, n))
    return np.stack(lines, axis=1), np.stack(blocks, axis=1)


def _length_p(style: Style) -> float:
    if style.lines < 1:
        raise ValueError(f"an answer has at least one line, not {style.lines}")
    return SHAPE / (SHAPE + style.lines - 1)


def _length_distribution(style: Style) -> tuple[np.ndarray, np.ndarray]:
    """The answer lengths one model writes, and their probabilities (all but 1e-12 of the mass)."""
    p = _length_p(style)
    extra = np.arange(int(nbinom.ppf(1 - 1e-12, SHAPE, p)) + 1)
    weights = nbinom.pmf(extra, SHAPE, p)
    return 1.0 + extra, weights / weights.sum()


def _names(prefix: str, n: int) -> pa.Array:
    return pa.array([f"{prefix}-{i:06d}" for i in range(n)])
