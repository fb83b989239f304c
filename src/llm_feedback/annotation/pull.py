"""pull: every response on the server back as rows, with each score put back on the model that wrote the answer.

The output is sorted and holds only what annotators wrote, so an unchanged server gives a byte-identical artifact and
DVC reruns analyze only when annotations changed."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from llm_feedback.annotation.connection import OFFLINE, kept_offline, reporting_errors, resolve
from llm_feedback.annotation.dataset_settings import (
    COMMENTS,
    CORRECT_QUESTION,
    CORRECTED_RESPONSE,
    PREFERENCE_QUESTION,
    response_field,
    score_question,
    shown_answer,
)
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.annotation.record_pages import list_records
from llm_feedback.annotation.values import (
    label_problem,
    preference_problem,
    rating_scale,
    score_problem,
    status_problem,
    text_problem,
)
from llm_feedback.artifacts import ANNOTATIONS, read_table, text_sha
from llm_feedback.errors import InputError, PipelineError
from llm_feedback.params import Params
from llm_feedback.rubric import criterion_question


@dataclass(frozen=True)
class Pulled:
    """The pull stage's result: the annotations table and what the server held."""

    table: pa.Table
    records: int
    annotated: int
    statuses: dict[str, int]  # responses (one per record and annotator) by status
    annotators: int
    not_in_receipt: int  # records on the server the receipt has no blinding entry for
    problems: tuple[str, ...] = ()  # responses holding a value outside the dataset's settings: "record R by A: why"

    def line(self, *, output: Path) -> str:
        """The stage's summary; `output` is where the table is written."""
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none yet"
        line = (
            f"{self.annotated} of {self.records} records annotated; responses: {statuses}; {self.annotators} annotators"
        )
        if self.not_in_receipt:
            line += f"; {self.not_in_receipt} records left out: the receipt does not know their models (run push)"
        if self.problems:
            line += (
                f"; {len(self.problems)} responses will not count, they hold a value outside the dataset's settings "
                f"(column problem; first: {self.problems[0]})"
            )
        return f"{line} -> {output} ({self.table.num_rows} rows)"


def kept(path: Path) -> str:
    """Offline (LLM_FEEDBACK_ANNOTATION_OFFLINE=1): the annotations at `path` stay as they are, checked against their
    contract and described, never rewritten (so DVC sees the same output and what follows does not rerun)."""
    table = read_table(kept_offline(path), ANNOTATIONS)
    records = len(set(table.column("record_id").to_pylist()))
    annotators = len(set(table.column("annotator").to_pylist()))
    return (
        f"annotation server not contacted ({OFFLINE}): kept {path} as it is ({table.num_rows} rows; {records} records "
        f"annotated, {annotators} annotators)"
    )


def pull(params: Params, *, receipt: Receipt) -> Pulled:
    """`receipt` (written by push) says which dataset to read and which model wrote each blinded response."""
    target = resolve(params.argilla)
    settings = params.annotation
    if not receipt.same_dataset(target.url, settings.workspace, settings.dataset):
        raise InputError(
            f"{params.paths.push_receipt}: written for {receipt.workspace}/{receipt.dataset} at {receipt.url}, "
            f"but params point at {settings.workspace}/{settings.dataset} at {target.url}; run push first"
        )
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = target.client()
        http = client.http_client
        found = http.get(f"/api/v1/datasets/{receipt.dataset_id}")
        if found.status_code == 404:
            raise PipelineError(
                f"dataset {receipt.workspace}/{receipt.dataset} (id {receipt.dataset_id}) is not on {target.url} any "
                "more (deleted, or a new server data folder); run push to create it again"
            )
        found.raise_for_status()
        questions = http.get(f"/api/v1/datasets/{receipt.dataset_id}/questions")
        questions.raise_for_status()
        users = http.get("/api/v1/users")
        users.raise_for_status()
        records = list_records(
            client, receipt.dataset_id, {q["id"]: q["name"] for q in questions.json()["items"]}, "pull"
        )
    usernames = {u["id"]: u["username"] for u in users.json()["items"]}
    orders = receipt.orders()

    rows: list[dict] = []
    statuses: Counter[str] = Counter()
    annotators: set[str] = set()
    problems: list[str] = []
    annotated = missing = 0
    for record in records:
        order = orders.get(record.record_id)
        if order is None:
            missing += 1
            continue
        annotated += bool(record.responses)
        task_id = receipt.blinding[record.record_id]["task_id"]
        shas = [text_sha(shown_answer(record.fields, p)) for p in range(1, len(order) + 1)]
        asked = Asked.from_params(params, responses=len(order))
        for response in record.responses:
            annotator = usernames.get(response["user_id"], response["user_id"])
            annotators.add(annotator)
            answer = Answer.read(response, asked)
            statuses[answer.status] += 1
            if answer.problem:
                problems.append(f"record {record.record_id} by {annotator}: {answer.problem}")
            for position, model in enumerate(order, 1):
                rows.append(
                    {
                        "record_id": record.record_id,
                        "task_id": task_id,
                        "annotator": annotator,
                        "model": model,
                        "position": position,
                        "response_sha": shas[position - 1],
                        "score": answer.scores[position - 1],
                        "status": answer.status,
                        "to_correct": _unblind(answer.to_correct, order),
                        "corrected_response": answer.corrected_response,
                        "comments": answer.comments,
                        "updated_at": _utc(response["updated_at"]),
                        "problem": answer.problem,
                        "preferred": _unblind(answer.preferred, order),
                    }
                )
    rows.sort(key=lambda r: (r["task_id"], r["record_id"], r["annotator"], r["position"]))
    table = pa.Table.from_pylist(rows, schema=ANNOTATIONS.schema)
    return Pulled(
        table=table,
        records=len(records),
        annotated=annotated,
        statuses=dict(statuses),
        annotators=len(annotators),
        not_in_receipt=missing,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class Asked:
    """What the dataset asks of each answer, by the rubric: its total on the scale, or each criterion's points
    (added up here), and whether it asks which response is better."""

    responses: int
    scale: range
    criteria: tuple[tuple[str, tuple[int, ...]], ...] = ()
    preference: bool = False

    @classmethod
    def from_params(cls, params: Params, *, responses: int) -> Asked:
        rubric = params.rubric
        asked = rubric.criteria if params.annotation.rubric == "criteria" else []
        return cls(
            responses=responses,
            scale=rating_scale(rubric),
            criteria=tuple((c.name, tuple(c.points)) for c in asked),
            preference=params.annotation.preference,
        )

    def ratings(self, position: int) -> dict[str, range | tuple[int, ...]]:
        """The rating questions of the answer at `position`, each with the values it may hold."""
        if self.criteria:
            return {criterion_question(name, position): points for name, points in self.criteria}
        return {score_question(position): self.scale}


@dataclass(frozen=True)
class Answer:
    """One response's values, each checked against the dataset's settings; a value that fails is not kept (it could
    not even be stored when it is not a number) and `problem` says what it was. A score asked criterion by
    criterion is their sum, once every criterion of the answer is rated."""

    status: str
    scores: list[int | None]
    to_correct: str | None
    corrected_response: str | None
    comments: str | None
    preferred: str | None
    problem: str | None

    @classmethod
    def read(cls, response: dict, asked: Asked) -> Answer:
        values = response.get("values") or {}
        ratings = {name: allowed for p in range(1, asked.responses + 1) for name, allowed in asked.ratings(p).items()}
        labels = [CORRECT_QUESTION] + ([PREFERENCE_QUESTION] if asked.preference else [])
        raw = {
            name: (values.get(name) or {}).get("value") for name in [*ratings, *labels, CORRECTED_RESPONSE, COMMENTS]
        }
        checks = {name: score_problem(name, raw[name], allowed=allowed) for name, allowed in ratings.items()}
        checks[CORRECT_QUESTION] = label_problem(CORRECT_QUESTION, raw[CORRECT_QUESTION], responses=asked.responses)
        if asked.preference:
            checks[PREFERENCE_QUESTION] = preference_problem(
                PREFERENCE_QUESTION, raw[PREFERENCE_QUESTION], responses=asked.responses
            )
        checks |= {name: text_problem(name, raw[name]) for name in (CORRECTED_RESPONSE, COMMENTS)}
        found = [status_problem(response["status"])] + list(checks.values())
        kept = {name: None if checks[name] else raw[name] for name in checks}
        scores = []
        for position in range(1, asked.responses + 1):
            parts = [kept[name] for name in asked.ratings(position)]
            scores.append(None if any(part is None for part in parts) else sum(parts))
        return cls(
            status=response["status"],
            scores=scores,
            to_correct=kept[CORRECT_QUESTION],
            corrected_response=kept[CORRECTED_RESPONSE] or None,
            comments=kept[COMMENTS] or None,
            preferred=kept.get(PREFERENCE_QUESTION),
            problem="; ".join(p for p in found if p) or None,
        )


def _unblind(label: str | None, order: list[str]) -> str | None:
    """`response_2` means the model shown second; the other options keep their names."""
    shown = {response_field(position): model for position, model in enumerate(order, 1)}
    return shown.get(label, label) if label is not None else None


def _utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
