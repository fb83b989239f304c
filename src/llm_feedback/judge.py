"""judge: an LLM scores every answer with the annotators' own rubric, criterion by criterion, then the total.

Requests go through the generate stage's machinery (concurrency, retries, request cache, resume), asking for JSON
where the backend has a JSON or grammar mode. An answer that is not a usable verdict (no JSON, a missing or
out-of-range criterion, a total that does not add up, a refusal) is recorded as an error, never guessed. The optional
pairwise mode asks which of two answers is better in both orders; a verdict counts only when both orders agree, so
a judge's preference for the first (or second) position cancels out.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from llm_feedback.artifacts import GENERATIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS
from llm_feedback.generation import BackendFactory, ModelSummary, generate
from llm_feedback.params import FormatParams, GenerationParams, Params
from llm_feedback.prompts import build_prompts

CRITERIA = {"comments_and_docstrings": (0, 1, 2), "test_example": (0, 1, 2), "runs_correctly": (0, 3)}
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "integer", "enum": list(values)} for name, values in CRITERIA.items()},
        "total": {"type": "integer", "minimum": 0, "maximum": 7},
        "rationale": {"type": "string"},
    },
    "required": [*CRITERIA, "total", "rationale"],
}
PAIRWISE_SCHEMA = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B", "tie"]}, "rationale": {"type": "string"}},
    "required": ["better", "rationale"],
}
SEPARATOR = "\x1f"  # joins (task, model...) into one request key; never in a task id or model name


def score_prompt(rubric: str, instruction: str, answer: str) -> str:
    return f"""You review answers to Python programming tasks, with the same rubric as the human reviewers.

Rubric (the points add up, 0 to 7):
{rubric}

Judge the answer criterion by criterion, then add them up:
- comments_and_docstrings: 0, 1 or 2
- test_example: 0, 1 or 2
- runs_correctly: 3 if the code runs and does what the task asks, else 0
- total: the sum of the three

Reply with one JSON object and nothing else:
{{"comments_and_docstrings": <0-2>, "test_example": <0-2>, "runs_correctly": <0 or 3>, "total": <0-7>, "rationale": "<one or two sentences>"}}

<task>
{instruction}
</task>

<answer>
{answer}
</answer>"""


def pairwise_prompt(rubric: str, instruction: str, first: str, second: str) -> str:
    return f"""You compare two answers to a Python programming task, with this rubric (higher is better):
{rubric}

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


@dataclass(frozen=True)
class Verdict:
    score: int | None
    rationale: str | None
    error: str | None


def parse_verdict(text: str | None) -> Verdict:
    """A rubric verdict from the judge's answer, or the reason it is not one."""
    data, problem = _json_object(text)
    if data is None:
        return Verdict(None, None, problem)
    for name, allowed in CRITERIA.items():
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
            return Verdict(None, None, f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    parts = sum(data[name] for name in CRITERIA)
    total = data.get("total")
    if total != parts:
        return Verdict(None, None, f"total {total!r} is not the sum of the criteria ({parts})")
    rationale = data.get("rationale")
    return Verdict(parts, rationale if isinstance(rationale, str) else None, None)


def parse_preference(text: str | None) -> tuple[str | None, str | None]:
    """"A", "B" or "tie" from a pairwise answer, or (None, the reason)."""
    data, problem = _json_object(text)
    if data is None:
        return None, problem
    better = data.get("better")
    if better not in ("A", "B", "tie"):
        return None, f"better must be A, B or tie, got {better!r}"
    return better, None


def _json_object(text: str | None) -> tuple[dict | None, str | None]:
    """The first JSON object in the text (bare, fenced, or after some prose)."""
    if text is None:
        return None, "no answer"
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than Python's stack
            continue
        if isinstance(value, dict):
            return value, None
    snippet = " ".join(text.split())[:80]
    return None, f"no JSON object in the judge's answer: {snippet!r}" if snippet else "an empty answer"


@dataclass(frozen=True)
class JudgeRun:
    judgments: pa.Table
    pairwise: pa.Table
    summaries: list[ModelSummary]


def run_judge(
    tasks: pa.Table,
    generations: pa.Table,
    params: Params,
    rubric: str,
    make_backend: BackendFactory,
    previous: pa.Table | None = None,
) -> JudgeRun:
    settings = params.judge
    judge = settings.model
    assert judge is not None  # checked when params load
    instructions = dict(zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist()))
    answers = {(t, m): r for t, m, r in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response")))
               if r is not None and m in params.compare and t in instructions}

    requests: dict[str, str] = {}
    for (task_id, model), answer in answers.items():
        requests[SEPARATOR.join(("score", task_id, model))] = score_prompt(rubric, instructions[task_id], answer)
    if settings.pairwise:
        for task_id, instruction in instructions.items():
            present = [m for m in params.compare if (task_id, m) in answers]
            for a, b in itertools.combinations(present, 2):
                for first, second in ((a, b), (b, a)):
                    requests[SEPARATOR.join(("pair", task_id, first, second))] = pairwise_prompt(
                        rubric, instruction, answers[(task_id, first)], answers[(task_id, second)])
    texts, summaries = _ask(requests, params, make_backend, previous)

    rows = []
    for (task_id, model) in answers:
        key = SEPARATOR.join(("score", task_id, model))
        text, error, request_hash = texts[key]
        verdict = parse_verdict(text) if error is None else Verdict(None, None, error)
        rows.append({"task_id": task_id, "model": model, "judge": judge, "score": verdict.score,
                     "rationale": verdict.rationale, "error": verdict.error, "answer": text,
                     "request_hash": request_hash})
    return JudgeRun(pa.Table.from_pylist(rows, schema=JUDGMENTS.schema), _pairwise(texts, answers, params.compare, judge),
                    summaries)


def _ask(requests: dict[str, str], params: Params, make_backend: BackendFactory, previous: pa.Table | None):
    """Send the judge prompts through generate(): key -> (text, transport error, request hash)."""
    settings = params.judge
    judge = settings.model
    keys = list(requests)
    prompt_tasks = TASKS.validate(pa.table({
        "task_id": keys, "instruction": [requests[k] for k in keys],
        "source": ["judge"] * len(keys), "source_row": list(range(len(keys))),
    }), "judge prompts")
    prompts, _ = build_prompts(prompt_tasks, params.models, [judge], FormatParams())
    defaults = GenerationParams(max_new_tokens=settings.max_new_tokens, temperature=0.0, top_p=1.0, seed=0, stop=[])
    judge_params = params.model_copy(update={"compare": [judge], "generation": defaults})
    table, summaries = generate(prompts, judge_params, params.paths.judge_cache, _as_generations(previous),
                                make_backend, json_schema=VERDICT_SCHEMA if settings.json_mode else None)
    return {k: (r, e, h) for k, r, e, h in zip(*(table.column(c).to_pylist() for c in
                                                  ("task_id", "response", "error", "request_hash")))}, summaries


def _as_generations(previous: pa.Table | None) -> pa.Table | None:
    """An earlier judgments artifact as generate's cache seed: its raw answers by request hash."""
    if previous is None:
        return None
    rows = [{"task_id": r["task_id"], "model": r["judge"], "response": r["answer"], "finish_reason": None,
             "prompt_tokens": None, "completion_tokens": None, "latency_s": None, "attempts": 1,
             "error": None if r["answer"] is not None else r["error"], "request_hash": r["request_hash"]}
            for r in previous.to_pylist()]
    return pa.Table.from_pylist(rows, schema=GENERATIONS.schema)


def _pairwise(texts: dict, answers: dict, compare: Sequence[str], judge: str) -> pa.Table:
    rows = []
    tasks = sorted({t for t, _ in answers})
    for task_id in tasks:
        present = [m for m in compare if (task_id, m) in answers]
        for a, b in itertools.combinations(present, 2):
            ab, ba = (SEPARATOR.join(("pair", task_id, x, y)) for x, y in ((a, b), (b, a)))
            if ab not in texts:
                continue
            first, error_ab = _preference(texts[ab], a, b)
            second, error_ba = _preference(texts[ba], b, a)
            error = error_ab or error_ba
            verdict = None if error else (first if first == second else "tie")
            rows.append({"task_id": task_id, "model_a": a, "model_b": b, "judge": judge, "a_first": first,
                         "b_first": second, "verdict": verdict, "error": error})
    return pa.Table.from_pylist(rows, schema=JUDGE_PAIRWISE.schema)


def _preference(entry: tuple, first: str, second: str) -> tuple[str | None, str | None]:
    """The preferred model's name (or "tie") from one order's answer."""
    text, error, _ = entry
    if error is not None:
        return None, error
    better, problem = parse_preference(text)
    if better is None:
        return None, problem
    return {"A": first, "B": second, "tie": "tie"}[better], None
