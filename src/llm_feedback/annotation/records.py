"""The records annotators see: one per task, its answers in a seeded random order (the blinding map stays with the
pipeline, never on the server), with the judge's scores as suggestions and execution results as metadata. Each
answer is shown with its code fences normalised (`presentation.normalise`), so no model looks better or worse for
how it fenced its code; its words are the model's own."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from llm_feedback.annotation.dataset_settings import (
    GROUP_METADATA,
    INSTRUCTION,
    SOURCE_METADATA,
    DatasetSpec,
    execution_metadata,
    response_field,
    score_question,
)
from llm_feedback.annotation.side_by_side import RESPONSES, field_value
from llm_feedback.judge_replies import first_json_object
from llm_feedback.presentation import normalise
from llm_feedback.rubric import criterion_question


@dataclass(frozen=True)
class Suggestion:
    question: str
    value: int
    agent: str


@dataclass(frozen=True)
class AnnotationRecord:
    record_id: str
    task_id: str
    models: tuple[str, ...]  # the model shown at each position: models[0] is Response 1
    fields: dict[str, str]
    metadata: dict[str, str]
    suggestions: tuple[Suggestion, ...] = ()

    def content_hash(self) -> str:
        """What annotators see (and what push compares with the server)."""
        return _sha256(
            canonical_content(self.fields, self.metadata, {(s.question, s.value, s.agent) for s in self.suggestions})
        )

    def to_sdk(self):  # -> argilla.Record
        import argilla as rg

        return rg.Record(
            id=self.record_id,
            fields=self.fields,
            metadata=self.metadata,
            suggestions=[
                rg.Suggestion(question_name=s.question, value=s.value, agent=s.agent) for s in self.suggestions
            ],
        )


def canonical_content(fields: Mapping, metadata: Mapping, suggestions: set[tuple[str, int, str]]) -> str:
    return json.dumps({"fields": fields, "metadata": metadata, "suggestions": sorted(suggestions)}, sort_keys=True)


def task_of(record_id: str) -> str:
    """A record's task: its id, or what comes before the dot of a copy's id (`<task_id>.<hash>`)."""
    return record_id.rpartition(".")[0] if "." in record_id else record_id


def blind_order(task_id: str, *, models: Sequence[str], seed: int) -> tuple[str, ...]:
    """The display order of one task's answers: seeded per task, so it is stable across runs and machines."""
    order = list(models)
    random.Random(f"{seed}:order:{task_id}").shuffle(order)
    return tuple(order)


def annotator_group(task_id: str, *, groups: Sequence[str], seed: int) -> str:
    return groups[random.Random(f"{seed}:group:{task_id}").randrange(len(groups))]


@dataclass(frozen=True)
class BuiltRecords:
    records: list[AnnotationRecord]
    missing_answers: int  # tasks left out because a model has no answer (yet)


def build_records(
    tasks: pa.Table,
    *,
    generations: pa.Table,
    models: Sequence[str],
    spec: DatasetSpec,
    seed: int,
    known_orders: Mapping[str, Sequence[str]] | None = None,
    judgments: pa.Table | None = None,
    executions: pa.Table | None = None,
) -> BuiltRecords:
    """One record per task that every model answered, each answer normalised for display. `known_orders` (from the
    last receipt) keeps the order of records already on the server, so a changed seed cannot reshuffle what
    annotators have seen."""
    known_orders = known_orders or {}
    answers: dict[tuple[str, str], str] = {}
    for task_id, model, response in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response"))):
        if response is not None:
            answers[(task_id, model)] = normalise(response)
    judged = _by_answer(judgments, "score", ("judge", "rationale", "answer")) if judgments is not None else {}
    executed = (
        _by_answer(executions, "status", ("tests_passed", "tests_total", "stderr_tail"))
        if executions is not None
        else {}
    )

    records, missing = [], 0
    for task_id, instruction, source in zip(
        *(tasks.column(c).to_pylist() for c in ("task_id", "instruction", "source"))
    ):
        if any((task_id, model) not in answers for model in models):
            missing += 1
            continue
        known = known_orders.get(task_id)
        if known is None or sorted(known) != sorted(models):
            known = blind_order(task_id, models=models, seed=seed)
        order = tuple(known)
        shown = [answers[(task_id, model)] for model in order]
        fields: dict = {INSTRUCTION: instruction}
        if spec.layout == "side_by_side":
            fields[RESPONSES] = field_value(
                shown,
                executions=[_execution(executed.get((task_id, model))) for model in order],
                rationales=[judged.get((task_id, model), (None, None, None, None))[2] for model in order],
            )
        else:
            fields.update({response_field(i): text for i, text in enumerate(shown, 1)})
        metadata = {SOURCE_METADATA: source}
        if spec.groups:
            metadata[GROUP_METADATA] = annotator_group(task_id, groups=spec.groups, seed=seed)
        suggestions = []
        for i, model in enumerate(order, 1):
            if (task_id, model) in judged:
                score, judge, _, answer = judged[(task_id, model)]
                suggestions += _suggested(spec, position=i, score=int(score), judge=str(judge), answer=answer)
            if spec.with_executions and (task_id, model) in executed:
                metadata[execution_metadata(i)] = executed[(task_id, model)][0]
        records.append(AnnotationRecord(task_id, task_id, order, fields, metadata, tuple(suggestions)))
    return BuiltRecords(records, missing)


def _by_answer(table: pa.Table, value: str, extra: tuple[str, ...]) -> dict[tuple[str, str], tuple]:
    """(task_id, model) -> (value, *extra) for rows whose value is set."""
    columns = [table.column(c).to_pylist() for c in ("task_id", "model", value, *extra)]
    return {(row[0], row[1]): tuple(row[2:]) for row in zip(*columns) if row[2] is not None}


def _suggested(spec: DatasetSpec, *, position: int, score: int, judge: str, answer: str | None) -> list[Suggestion]:
    """The judge's verdict as suggestions: its total, or, criterion by criterion, the points its reply gave each
    (a usable verdict's criteria are on the rubric: judge checked them)."""
    if not spec.criteria:
        return [Suggestion(score_question(position), score, judge)]
    data, _ = first_json_object(answer)
    parts = data or {}
    return [
        Suggestion(criterion_question(name, position), parts[name], judge)
        for name, _, points, _ in spec.criteria
        if parts.get(name) in points
    ]


def _execution(row: tuple | None) -> dict[str, str] | None:
    """What the side-by-side view folds under an answer from its execution row (status, tests, stderr's tail)."""
    if row is None:
        return None
    status, passed, total, stderr = row
    tests = f"{passed} of {total} tests passed" if total else ""
    return {"status": str(status), "tests": tests, "stderr": stderr or ""}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
