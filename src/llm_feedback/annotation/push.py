"""push: bring the annotation dataset on the server in line with the inputs, changing only what differs and never
touching what someone has already answered without being told to."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from llm_feedback.annotation.connection import Target, reporting_errors, resolve
from llm_feedback.annotation.dataset_settings import (
    CHANGED_MARK,
    CHANGED_METADATA,
    INSTRUCTION,
    REVIEW_METADATA,
    DatasetSpec,
    describe_structure_change,
    rated_content,
    structure_of,
)
from llm_feedback.annotation.receipt import BlindingEntry, Receipt, RoundEntry
from llm_feedback.annotation.record_pages import ServerRecord, list_records
from llm_feedback.annotation.records import AnnotationRecord, build_records, task_of
from llm_feedback.annotation.review import ReviewMarks, to_sdk, without_mark
from llm_feedback.annotation.rounds import (
    Chances,
    RoundStatus,
    active_weights,
    judge_uncertainty,
    learnt_weights,
    next_round,
)
from llm_feedback.errors import ConfigError, PipelineError
from llm_feedback.params import Params
from llm_feedback.presentation import normalise

SHOWN_IDS = 5


@dataclass(frozen=True)
class Pushed:
    """The push stage's result: the receipt to keep and what changed on the server."""

    receipt: Receipt
    created: int
    updated: int
    unchanged: int
    skipped: int  # answered records whose new content was not pushed (on_annotated_change: skip)
    copies: int  # new records holding the new content of answered ones (on_annotated_change: new_record)
    missing_answers: int
    settings_changes: tuple[str, ...]
    marked: int  # records marked for re-rating: the current answers of tasks answered with older text
    waiting: int  # of these, the ones nobody has submitted yet
    rounds: RoundStatus | None = None  # published in rounds (annotation.round_size)
    review: int = 0  # records marked needs_review: their annotators disagree (disagreements.py)

    def line(self, *, output: Path) -> str:
        """The stage's summary; `output` is where the receipt is written."""
        parts = [f"{self.created} new", f"{self.updated} updated", f"{self.unchanged} unchanged"]
        if self.skipped:
            parts.append(
                f"{self.skipped} answered and changed, skipped: their new answers are not shown "
                "(on_annotated_change: new_record adds them for re-rating)"
            )
        if self.copies:
            parts.append(f"{self.copies} answered and changed, added as new records")
        if self.marked:
            parts.append(
                f"{self.marked} marked for re-rating in metadata {CHANGED_METADATA}, {self.waiting} not yet submitted"
            )
        if self.review:
            parts.append(f"{self.review} marked {REVIEW_METADATA}: their annotators disagree")
        if self.missing_answers:
            parts.append(f"{self.missing_answers} tasks left out: a model has no answer yet (rerun generate)")
        if self.settings_changes:
            parts.append("updated " + ", ".join(self.settings_changes))
        r = self.receipt
        where = f"{r.records} records in {r.workspace}/{r.dataset} at {r.url} ({'; '.join(parts)}) -> {output}"
        return f"{self.rounds.line()}; {where}" if self.rounds is not None else where


def push(
    params: Params,
    *,
    tasks: pa.Table,
    generations: pa.Table,
    previous: Receipt | None = None,
    judgments: pa.Table | None = None,
    executions: pa.Table | None = None,
    judge_pairwise: pa.Table | None = None,
) -> Pushed:
    """`previous` (the last receipt) keeps the display order of records already on the server and says which rounds
    were drawn; `judgments` become suggestions and `executions` metadata; with `judge_pairwise`, they tell active
    selection where the judge is unsure."""
    settings = params.annotation
    if settings.round_size is not None and settings.select == "active" and not _has_scores(judgments):
        raise ConfigError(
            f"annotation.select: active draws each round where the judge is least sure, and there are no judge "
            f"scores in {params.paths.judgments}: set judge.enabled: true and run judge, or use select: random"
        )
    target = resolve(params.argilla)
    spec = DatasetSpec.from_params(
        settings, rubric=params.rubric, responses=len(params.compare), with_executions=executions is not None
    )
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns where a lookup finds nothing; we report that ourselves
        client = target.client()
        workspace = _workspace(client, settings.workspace)
        dataset = client.datasets(name=settings.dataset, workspace=workspace)
        existing: list[ServerRecord] = []
        changes: tuple[str, ...] = ()
        if dataset is not None:
            existing = list_records(client, str(dataset.id), _question_ids(dataset), "reading the dataset")
            dataset, changes = _reconcile_settings(target, dataset, spec, params, existing)
            if dataset is None:
                existing = []
        if dataset is None:
            import argilla as rg

            dataset = rg.Dataset(
                name=settings.dataset, workspace=workspace, settings=spec.build(), client=client
            ).create()

        kept = previous if previous is not None and previous.dataset_id == str(dataset.id) else None
        known = kept.orders() if kept is not None else {}
        built = build_records(
            tasks,
            generations=generations,
            models=params.compare,
            spec=spec,
            seed=settings.seed,
            known_orders=known,
            judgments=judgments,
            executions=executions,
        )
        server = {r.record_id: r for r in existing}
        review = ReviewMarks.read(client, existing, params=params, responses=spec.responses)
        rounds = (
            _Rounds.advance(
                params,
                built=built.records,
                server=server,
                previous=kept,
                judgments=judgments,
                judge_pairwise=judge_pairwise,
                so_far=functools.cache(  # asked only once a round is done, so kept holds it
                    lambda: _so_far(params, receipt=kept, generations=generations, judgments=judgments)
                ),
            )
            if settings.round_size is not None
            else _Rounds.whole(built.records, server, kept, settings.on_annotated_change)
        )
        plan = rounds.plan
        to_log = [review.marked(record).to_sdk() for record in plan.to_log]
        to_log += [_unmarked(review.on_server(record)) for record in plan.unmark]
        remarked = review.changed(
            existing, logged={r.record_id for r in plan.to_log} | {r.record_id for r in plan.unmark}
        )
        plan.updated += len(remarked)  # only the mark changes
        to_log += [to_sdk(record) for record in remarked]
        if to_log:
            dataset.records.log(to_log, batch_size=min(settings.batch_size, len(to_log)))

        shown: dict[str, tuple[str, list[str]]] = {
            rid: (entry["task_id"], entry["models"]) for rid, entry in (kept.blinding.items() if kept else ())
        }
        shown.update({r.record_id: (r.task_id, list(r.models)) for r in rounds.records + plan.copies})
        on_server = set(server) | {r.record_id for r in plan.to_log}
        blinding: dict[str, BlindingEntry] = {
            rid: {"task_id": task, "models": models, **rounds.sampling(task)}
            for rid in sorted(on_server)
            if rid in shown
            for task, models in [shown[rid]]
        }
        content = hashlib.sha256(
            "".join(f"{r.record_id}:{r.content_hash()}\n" for r in rounds.records).encode()
        ).hexdigest()
        receipt = Receipt(
            url=target.url,
            workspace=settings.workspace,
            dataset=settings.dataset,
            dataset_id=str(dataset.id),
            models=list(params.compare),
            records=len(on_server),
            settings_hash=spec.settings_hash(),
            content_hash=content,
            blinding=blinding,
            rounds=rounds.entries,
        )
    return Pushed(
        receipt=receipt,
        created=plan.created,
        updated=plan.updated,
        unchanged=plan.unchanged,
        skipped=plan.skipped,
        copies=plan.copied,
        missing_answers=built.missing_answers,
        settings_changes=changes,
        marked=len(plan.copies),
        waiting=plan.waiting,
        rounds=rounds.status,
        review=review.count(),
    )


def _has_scores(judgments: pa.Table | None) -> bool:
    return judgments is not None and judgments.column("score").null_count < judgments.num_rows


@dataclass(frozen=True)
class _Rounds:
    """Which of the built records this push publishes (or keeps up to date), and the rounds drawn so far."""

    records: list[AnnotationRecord]  # the built records of published tasks, a new round's included
    plan: _Plan
    entries: list[RoundEntry]
    chances: Chances  # of the tasks published in rounds, a new one included
    status: RoundStatus | None

    @classmethod
    def whole(
        cls, built: list[AnnotationRecord], server: dict[str, ServerRecord], previous: Receipt | None, on_change: str
    ) -> _Rounds:
        """Every record at once (round_size: null); rounds drawn before stay in the receipt."""
        entries, chances = (list(previous.rounds), previous.chances()) if previous else ([], {})
        return cls(built, _plan(built, server, on_change), entries, chances, None)

    @classmethod
    def advance(
        cls,
        params: Params,
        *,
        built: list[AnnotationRecord],
        server: dict[str, ServerRecord],
        previous: Receipt | None,
        judgments: pa.Table | None,
        judge_pairwise: pa.Table | None,
        so_far: Callable[[], _SoFar],
    ) -> _Rounds:
        """Keep the tasks published so far up to date and, once every record of the last round is done, draw the
        next round, unless the rounds so far (`so_far`, asked only then) decide every pair. A task the receipt
        does not know is not published yet, even when it is on the server: a push that died after logging part of a
        round draws the same round again."""
        settings = params.annotation
        entries = list(previous.rounds) if previous else []
        chances = previous.chances() if previous else {}
        known = {entry["task_id"] for entry in previous.blinding.values()} if previous else set()
        on_server = known | {task_of(record_id) for record_id in server}
        current = [record for record in built if record.task_id in on_server]
        plan = _plan(current, server, settings.on_annotated_change)
        last = sorted(task for task, (number, _) in chances.items() if number == len(entries))
        holding = {copy.task_id: copy.record_id for copy in plan.copies}  # a task's current answers
        done = sum(_done(server.get(holding.get(task, task)), settings.min_submitted) for task in last)
        design = [record.task_id for record in built if record.task_id in chances or record.task_id not in known]
        remaining = [task for task in design if task not in chances]
        at_most = math.ceil(len(design) / settings.round_size)
        if not remaining or done < len(last) or (entries and so_far().decided):
            stop = bool(remaining) and done == len(last)
            status = RoundStatus(len(entries), len(last), done, 0, len(remaining), at_most, decided=stop)
            return cls(current, plan, entries, chances, status)
        weights = _weights(
            params, design, judgments=judgments, judge_pairwise=judge_pairwise, so_far=so_far() if entries else None
        )
        seed = entries[0]["seed"] if entries else settings.seed  # a new seed would unsettle every chance so far
        look = None
        while look is None or not look.drawn:  # a round may draw none: the next is drawn at once
            look, chances = next_round(
                chances, weights=weights, number=len(entries) + 1, round_size=settings.round_size, seed=seed
            )
            entries.append(
                {
                    "round": look.number,
                    "tasks": len(weights),
                    "expected": look.expected,
                    "drawn": len(look.drawn),
                    "seed": seed,
                }
            )
        current = [record for record in built if record.task_id in on_server or record.task_id in look.drawn]
        left = len(remaining) - len(look.drawn)
        status = RoundStatus(look.number, len(look.drawn), 0, len(look.drawn), left, at_most)
        return cls(current, _plan(current, server, settings.on_annotated_change), entries, chances, status)

    def sampling(self, task_id: str) -> dict:
        """The round and chances a task's records carry (none when it was published outside rounds)."""
        if task_id not in self.chances:
            return {}
        number, since = self.chances[task_id]
        return {"round": number, "probabilities": since}


@dataclass(frozen=True)
class _SoFar:
    """What the rounds so far tell: whether every compared pair is decided, and, for active rounds, where the
    judge's differences missed the humans' (task -> squared residual, with each labelled task's chance)."""

    decided: bool
    residuals: dict[str, float]
    chances: dict[str, float]


def _so_far(params: Params, *, receipt: Receipt, generations: pa.Table, judgments: pa.Table | None) -> _SoFar:
    """The human scores of the rounds so far, read back from the server as pull reads them (analysis and its
    statistics load only when a round is done): the stopping decision (with the judge's scores, when it scored the
    tasks) and the judge's residuals."""
    from llm_feedback.annotation.pull import pull
    from llm_feedback.annotation.values import rating_scale
    from llm_feedback.judge_assisted import judge_scores, squared_residuals
    from llm_feedback.stopping import human_scores, stopping_on

    complete = human_scores(
        annotations=pull(params, receipt=receipt).table,
        generations=generations,
        compare=params.compare,
        params=params.analyze,
        scale=rating_scale(params.rubric),
    )
    found = stopping_on(
        complete, compare=params.compare, confidence=params.analyze.confidence, receipt=receipt, judgments=judgments
    )
    residuals = {}
    if judgments is not None and params.annotation.select == "active":
        residuals = squared_residuals(complete, judge_scores(judgments, params.compare), params.compare)
    chances = {task: chance for task, (_, chance) in receipt.sampling().items()}
    return _SoFar(found.decided, residuals, chances)


def _weights(
    params: Params,
    tasks: list[str],
    *,
    judgments: pa.Table | None,
    judge_pairwise: pa.Table | None,
    so_far: _SoFar | None,
) -> dict[str, float]:
    if params.annotation.select == "random":
        return dict.fromkeys(tasks, 1.0)
    uncertainty = judge_uncertainty(tasks, models=params.compare, judgments=judgments, judge_pairwise=judge_pairwise)
    if so_far is None:
        return active_weights(uncertainty)
    return learnt_weights(uncertainty, residuals=so_far.residuals, chances=so_far.chances)


def _done(record: ServerRecord | None, min_submitted: int) -> bool:
    return record is not None and sum(r["status"] == "submitted" for r in record.responses) >= min_submitted


def _workspace(client, name: str):
    import argilla as rg

    workspace = client.workspaces(name)
    return workspace if workspace is not None else rg.Workspace(name=name, client=client).create()


def _question_ids(dataset) -> dict[str, str]:
    return {str(q.id): q.name for q in dataset.settings.questions}


def _reconcile_settings(target: Target, dataset, spec: DatasetSpec, params: Params, existing: Sequence[ServerRecord]):
    """Update what can change in place; recreate (when allowed) or stop when the fields or questions changed.
    Returns the dataset (None when it was deleted) and what was updated."""
    settings = params.annotation
    current, wanted = structure_of(dataset.settings), spec.structure()
    if current == wanted:
        return dataset, _update_presentation(dataset, spec)
    what = describe_structure_change(current=current, wanted=wanted)
    name = f"{settings.workspace}/{settings.dataset}"
    if not settings.recreate:
        raise ConfigError(
            f"dataset {name} at {target.url} was published with other fields or questions ({what}), which Argilla "
            "cannot change; either set annotation.dataset to a new name, or annotation.recreate: true to delete and "
            "recreate it"
        )
    submitted = sum(record.submitted for record in existing)
    if submitted and not settings.force:
        raise PipelineError(
            f"dataset {name} has submitted responses on {submitted} records; recreating it would delete them. "
            "Run pull to keep them, then set annotation.force: true, or use a new annotation.dataset name"
        )
    dataset.delete()
    return None, (f"recreated the dataset ({what})",)


def _update_presentation(dataset, spec: DatasetSpec) -> tuple[str, ...]:
    """Guidelines, rating tooltip, the side-by-side template, task distribution and new metadata: Argilla lets these
    change after publishing."""
    import argilla as rg

    built = spec.build()
    server = dataset.settings
    changes = []
    if server.guidelines.strip() != spec.guidelines:
        server.guidelines = spec.guidelines
        changes.append("guidelines")
    for question in built.questions:
        mine = server.questions[question.name]
        if (mine.description or "") != (question.description or "") or mine.title != question.title:
            mine.description, mine.title = question.description, question.title
            changes.append(f"question {question.name}")
    for wanted in built.fields:
        mine = server.fields[wanted.name]
        if isinstance(wanted, rg.CustomField) and (mine.template, mine.advanced_mode) != (
            wanted.template,
            wanted.advanced_mode,
        ):
            mine.template, mine.advanced_mode = wanted.template, wanted.advanced_mode
            changes.append(f"field {wanted.name}'s template")
    if server.distribution.min_submitted != spec.min_submitted:
        server.distribution = rg.TaskDistribution(min_submitted=spec.min_submitted)
        changes.append("min_submitted")
    names = {m.name for m in server.metadata}
    for prop in built.metadata:
        if prop.name not in names:
            server.metadata.add(prop)
            changes.append(f"metadata {prop.name}")
    if changes:
        server.update()
    return tuple(changes)


@dataclass
class _Plan:
    to_log: list[AnnotationRecord] = field(default_factory=list)
    copies: list[AnnotationRecord] = field(default_factory=list)  # current answers of answered tasks, marked
    unmark: list[ServerRecord] = field(default_factory=list)  # marked records no longer holding current answers
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    copied: int = 0
    waiting: int = 0  # copies nobody has submitted yet


def _plan(records: Sequence[AnnotationRecord], server: dict[str, ServerRecord], on_change: str) -> _Plan:
    plan = _Plan()
    answered_and_changed = []
    for record in records:
        current = server.get(record.record_id)
        if current is None:
            plan.to_log.append(record)
            plan.created += 1
            continue
        record = _as_shown(record, current)
        if _same(current, record):
            plan.unchanged += 1
        elif current.annotated and rated_content(current.fields) != rated_content(record.fields):
            answered_and_changed.append(record)
        else:  # new text nobody answered yet, or only its presentation, metadata or suggestions (the judge ran again)
            plan.to_log.append(record)
            plan.updated += 1
    if answered_and_changed and on_change == "fail":
        ids = ", ".join(r.record_id for r in answered_and_changed[:SHOWN_IDS])
        more = len(answered_and_changed) - SHOWN_IDS
        and_more = f" and {more} more" if more > 0 else ""
        raise PipelineError(
            f"{len(answered_and_changed)} records already answered would change ({ids}{and_more}): "
            "set annotation.on_annotated_change to skip (keep what annotators saw) or new_record (add the new content "
            "as new records)"
        )
    _place_copies(plan, answered_and_changed, server, on_change)
    return plan


def _place_copies(
    plan: _Plan, answered_and_changed: Sequence[AnnotationRecord], server: dict[str, ServerRecord], on_change: str
) -> None:
    """The current text of each answered and changed task goes to a copy, marked for re-rating: the copy already on
    the server with this text, or a new one (new_record). The mark leaves every other record."""
    copies_on_server: dict[tuple[str, str], str] = {}
    for record_id, current in server.items():
        if "." in record_id:
            copies_on_server.setdefault((record_id.rpartition(".")[0], _text_key(_shown(current.fields))), record_id)
    for record in answered_and_changed:
        copy = _marked_copy(record, copies_on_server.get((record.task_id, _text_key(record.fields))))
        current = server.get(copy.record_id)
        copy = _as_shown(copy, current)
        if current is None and on_change == "skip":
            plan.skipped += 1
            continue
        if current is None:
            plan.to_log.append(copy)
            plan.copied += 1
        elif not _same(current, copy):  # the same text: only the mark, metadata or suggestions change
            plan.to_log.append(copy)
            plan.updated += 1
        plan.copies.append(copy)
        plan.waiting += current is None or not current.submitted
    current_copies = {copy.record_id for copy in plan.copies}
    plan.unmark = [r for rid, r in server.items() if CHANGED_METADATA in r.metadata and rid not in current_copies]
    plan.updated += len(plan.unmark)


def _marked_copy(record: AnnotationRecord, record_id: str | None) -> AnnotationRecord:
    """The record holding an answered task's new text: the copy already on the server with this text, or a new id
    from the content (without the mark, so copies made before the mark existed keep their ids)."""
    record_id = record_id or f"{record.task_id}.{record.content_hash()[:8]}"
    return replace(record, record_id=record_id, metadata={**record.metadata, CHANGED_METADATA: CHANGED_MARK})


def _unmarked(current: ServerRecord):  # -> argilla.Record
    import argilla as rg

    metadata = {k: v for k, v in current.metadata.items() if k != CHANGED_METADATA}
    return rg.Record(id=current.record_id, fields=current.fields, metadata=metadata)


def _as_shown(record: AnnotationRecord, current: ServerRecord | None) -> AnnotationRecord:
    """An answered record whose answers on the server differ from this one's only in how their code is fenced (it
    was pushed before answers were normalised for display) keeps the server's text: the words annotators rated did
    not change, so there is nothing to re-rate, and what they saw stays as they saw it."""
    if current is None or not current.annotated or current.fields == record.fields:
        return record
    return replace(record, fields=current.fields) if _shown(current.fields) == record.fields else record


def _shown(fields: dict) -> dict:
    """Fields with every answer normalised as build_records normalises it (the instruction is shown as written)."""
    return {k: v if k == INSTRUCTION or not isinstance(v, str) else normalise(v) for k, v in fields.items()}


def _text_key(fields: dict) -> str:
    return json.dumps(rated_content(fields), sort_keys=True)


def _same(current: ServerRecord, record: AnnotationRecord) -> bool:
    """Same text and metadata, and every suggestion in place (a suggestion no longer wanted is left on the server)."""
    wanted = {(s.question, s.value, s.agent) for s in record.suggestions}
    same_metadata = without_mark(current.metadata) == record.metadata  # the review mark is decided apart
    return current.fields == record.fields and same_metadata and wanted <= current.suggestions
