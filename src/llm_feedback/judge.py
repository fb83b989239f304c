"""judge: an LLM scores every answer with the annotators' own rubric, criterion by criterion, then the total.

The judge builds its own requests (its prompt as the judge model takes it, greedy at judge.max_new_tokens whatever
that model's own `generation:` says, and the JSON shape of the answer it wants, a verdict or a preference, where the
backend has a JSON or grammar mode); `llm.batch` sends them with the same cache, concurrency, retries and resume as
generate, and the judge reads the replies. An answer that is not a usable verdict (no JSON, a missing or
out-of-range criterion, a total that does not add up, a refusal) is recorded as an error, never guessed. The optional
pairwise mode asks which of two answers is better in both orders; a verdict counts only when both orders agree, so
a judge's preference for the first (or second) position cancels out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from llm_feedback.artifacts import JUDGE_PAIRWISE, JUDGMENTS
from llm_feedback.judge_replies import Verdict, parse_preference, parse_verdict
from llm_feedback.llm.base import Request
from llm_feedback.llm.batch import Answer, BackendFactory, ModelSummary, ask
from llm_feedback.llm.cache import CachedGeneration
from llm_feedback.params import GenerationParams, JudgeParams, ModelSpec, Params, RubricParams
from llm_feedback.prompts import conversation, load_tokenizer, render_prompts
from llm_feedback.rubric import full_text, points_text

PAIRWISE_SCHEMA = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B", "tie"]}, "rationale": {"type": "string"}},
    "required": ["better", "rationale"],
}
Key = tuple[str, ...]


def verdict_schema(rubric: RubricParams) -> dict:
    """The JSON shape of a verdict on the declared rubric: each criterion's points, then the total on its scale."""
    criteria = {c.name: {"type": "integer", "enum": list(c.points)} for c in rubric.criteria}
    return {
        "type": "object",
        "properties": {
            **criteria,
            "total": {"type": "integer", "minimum": rubric.low, "maximum": rubric.high},
            "rationale": {"type": "string"},
        },
        "required": [*criteria, "total", "rationale"],
    }


def score_reply(rubric: RubricParams) -> str:
    """The verdict's shape as the score prompt shows it, on one line."""
    parts = [f'"{c.name}": <{points_text(c.points)}>' for c in rubric.criteria]
    parts += [f'"total": <{rubric.low}-{rubric.high}>', '"rationale": "<one or two sentences>"']
    return "{" + ", ".join(parts) + "}"


def score_prompt(rubric: RubricParams, instruction: str, answer: str) -> str:
    if rubric.criteria:
        steps = "Judge the answer criterion by criterion, then add them up:\n" + "\n".join(
            [f"- {c.name}: {points_text(c.points)}" for c in rubric.criteria]
            + [f"- total: the sum of the {len(rubric.criteria)}"]
        )
    else:
        steps = f"Give the answer one total score from {rubric.low} to {rubric.high}."
    return f"""You review answers to tasks, with the same rubric as the human reviewers.

Rubric (from {rubric.low} to {rubric.high}):
{full_text(rubric)}

{steps}

Reply with one JSON object and nothing else:
{score_reply(rubric)}

<task>
{instruction}
</task>

<answer>
{answer}
</answer>"""


def pairwise_prompt(rubric: RubricParams, instruction: str, first: str, second: str) -> str:
    return f"""You compare two answers to a task, with this rubric (higher is better):
{full_text(rubric)}

Which answer is better? Reply with one JSON object and nothing else:
{{"better": "A" or "B" or "tie", "rationale": "<one or two sentences>"}}

<task>
{instruction}
</task>

<answer_A>
{first}
</answer_A>

<answer_B>
{second}
</answer_B>"""


def judge_sampling(settings: JudgeParams) -> GenerationParams:
    """Greedy, at the judge's own length: a model's own `generation:` settings are for its answers, not its verdicts
    (a stop sequence meant for code could cut a verdict short)."""
    return GenerationParams(max_new_tokens=settings.max_new_tokens, temperature=0.0, top_p=1.0, seed=0, stop=[])


@dataclass(frozen=True)
class Judged:
    judge: str
    judgments: pa.Table
    pairwise: pa.Table
    summaries: list[ModelSummary]  # the judge's requests

    def line(self, *, output: Path) -> str:
        scored = self.judgments.filter(self.judgments.column("score").is_valid()).num_rows
        total = self.judgments.num_rows
        line = f"{self.judge} scored {scored} of {total} answers ({total - scored} unusable verdicts"
        if self.pairwise.num_rows:
            line += f"; {self.pairwise.num_rows} pairs compared in both orders"
        return f"{line}) -> {output}"


def run_judge(
    *,
    tasks: pa.Table,
    generations: pa.Table,
    params: Params,
    make_backend: BackendFactory,
    previous: pa.Table | None,
) -> Judged:
    """Score every compared model's answer (and, in pairwise mode, compare each pair in both orders); `previous` is
    the stage's earlier judgments artifact, whose raw answers count as cached."""
    settings, rubric = params.judge, params.rubric
    judge = settings.model
    assert judge is not None  # checked when params load
    instructions = dict(zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist()))
    answers = {
        (t, m): r
        for t, m, r in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response")))
        if r is not None and m in params.compare and t in instructions
    }

    prompts: dict[Key, str] = {}
    for (task_id, model), answer in answers.items():
        prompts[("score", task_id, model)] = score_prompt(rubric, instructions[task_id], answer)
    pairs = _pairs(answers, params.compare) if settings.pairwise else []
    for task_id, a, b in pairs:
        for first, second in ((a, b), (b, a)):
            prompts[("pair", task_id, first, second)] = pairwise_prompt(
                rubric, instructions[task_id], answers[(task_id, first)], answers[(task_id, second)]
            )
    batch = ask(
        judge_requests(prompts, judge=judge, spec=params.models[judge], settings=settings, rubric=rubric),
        models=params.models,
        settings=params.generate,
        cache_path=params.paths.judge_cache,
        make_backend=make_backend,
        label="judge",
        earlier=_earlier(previous),
    )
    return Judged(
        judge,
        _judgments(batch.answers, answers, judge, rubric),
        _pairwise(batch.answers, pairs, judge),
        batch.summaries,
    )


def judge_requests(
    prompts: Mapping[Key, str], *, judge: str, spec: ModelSpec, settings: JudgeParams, rubric: RubricParams
) -> dict[Key, Request]:
    """Each prompt as the judge model takes it (chat messages, or its chat template rendered for a raw-text backend),
    at the judge's sampling, asking for the JSON shape of its kind of answer."""
    keys = list(prompts)
    system = spec.system_prompt
    if spec.needs_prompt:
        texts = pa.array([prompts[k] for k in keys], pa.string())
        rendered = render_prompts(load_tokenizer(judge, spec), system, texts).prompts.to_pylist()
    else:
        rendered = [None] * len(keys)
    sampling = judge_sampling(settings)
    # what each kind of request asks for: ("score", task, model) a verdict, ("pair", task, first, second) a preference
    schemas = {"score": verdict_schema(rubric), "pair": PAIRWISE_SCHEMA}
    return {
        key: Request(
            model=judge,
            messages=conversation(system, prompts[key]),
            prompt=prompt,
            generation=sampling,
            json_schema=schemas[key[0]] if settings.json_mode else None,
        )
        for key, prompt in zip(keys, rendered)
    }


def _earlier(previous: pa.Table | None) -> list[tuple[str, CachedGeneration]]:
    """An earlier judgments artifact's raw answers, by request hash."""
    if previous is None:
        return []
    return [
        (r["request_hash"], CachedGeneration(r["answer"], None, None, None, 0.0, 1))
        for r in previous.select(["request_hash", "answer"]).to_pylist()
        if r["answer"] is not None
    ]


def _judgments(
    replies: Mapping[Key, Answer], answers: Mapping[tuple[str, str], str], judge: str, rubric: RubricParams
) -> pa.Table:
    rows = []
    for task_id, model in answers:
        reply = replies[("score", task_id, model)]
        verdict = parse_verdict(reply.text, rubric) if reply.error is None else Verdict(None, None, reply.error)
        rows.append(
            {
                "task_id": task_id,
                "model": model,
                "judge": judge,
                "score": verdict.score,
                "rationale": verdict.rationale,
                "error": verdict.error,
                "answer": reply.text,
                "request_hash": reply.request_hash,
            }
        )
    return pa.Table.from_pylist(rows, schema=JUDGMENTS.schema)


def _pairs(answers: Mapping[tuple[str, str], str], compare: Sequence[str]) -> list[tuple[str, str, str]]:
    """(task, a, b) for every two compared models that both answered the task, by task, in `compare`'s order."""
    return [
        (task_id, a, b)
        for task_id in sorted({t for t, _ in answers})
        for a, b in itertools.combinations([m for m in compare if (task_id, m) in answers], 2)
    ]


def _pairwise(replies: Mapping[Key, Answer], pairs: Sequence[tuple[str, str, str]], judge: str) -> pa.Table:
    rows = []
    for task_id, a, b in pairs:
        first, error_ab = _preference(replies[("pair", task_id, a, b)], a, b)
        second, error_ba = _preference(replies[("pair", task_id, b, a)], b, a)
        error = error_ab or error_ba
        verdict = None if error else (first if first == second else "tie")
        rows.append(
            {
                "task_id": task_id,
                "model_a": a,
                "model_b": b,
                "judge": judge,
                "a_first": first,
                "b_first": second,
                "verdict": verdict,
                "error": error,
            }
        )
    return pa.Table.from_pylist(rows, schema=JUDGE_PAIRWISE.schema)


def _preference(reply: Answer, first: str, second: str) -> tuple[str | None, str | None]:
    """The preferred model's name (or "tie") from one order's answer."""
    if reply.error is not None:
        return None, reply.error
    better, problem = parse_preference(reply.text)
    if better is None:
        return None, problem
    return {"A": first, "B": second, "tie": "tie"}[better], None
