"""pull: every response on the server back as rows, with each score put back on the model that wrote the answer.

The output is sorted and holds only what annotators wrote, so an unchanged server gives a byte-identical artifact and
DVC reruns analyze only when annotations changed."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from llm_feedback.annotation.connection import reporting_errors, resolve
from llm_feedback.annotation.dataset_settings import (
    COMBINATION, COMMENTS, CORRECT_QUESTION, CORRECTED_RESPONSE, NEITHER, response_field, score_question,
)
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.annotation.server_records import list_records
from llm_feedback.artifacts import ANNOTATIONS, text_sha
from llm_feedback.errors import InputError, PipelineError
from llm_feedback.params import Params


@dataclass(frozen=True)
class PullResult:
    table: pa.Table
    records: int
    annotated: int
    statuses: dict[str, int]  # responses (one per record and annotator) by status
    annotators: int
    not_in_receipt: int  # records on the server the receipt has no blinding entry for

    def line(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "none yet"
        line = (f"{self.annotated} of {self.records} records annotated; responses: {statuses}; "
                f"{self.annotators} annotators")
        if self.not_in_receipt:
            line += f"; {self.not_in_receipt} records left out: the receipt does not know their models (run push)"
        return line


def pull(params: Params, receipt: Receipt) -> PullResult:
    target = resolve(params.argilla)
    settings = params.annotation
    if not receipt.same_dataset(target.url, settings.workspace, settings.dataset):
        raise InputError(
            f"{params.paths.push_receipt}: written for {receipt.workspace}/{receipt.dataset} at {receipt.url}, but params "
            f"point at {settings.workspace}/{settings.dataset} at {target.url}; run push first"
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
        records = list_records(client, receipt.dataset_id, {q["id"]: q["name"] for q in questions.json()["items"]}, "pull")
    usernames = {u["id"]: u["username"] for u in users.json()["items"]}
    orders = receipt.orders()

    rows: list[dict] = []
    statuses: Counter[str] = Counter()
    annotators: set[str] = set()
    annotated = missing = 0
    for record in records:
        order = orders.get(record.record_id)
        if order is None:
            missing += 1
            continue
        annotated += bool(record.responses)
        task_id = receipt.blinding[record.record_id]["task_id"]
        shas = [text_sha(record.fields.get(response_field(p), "")) for p in range(1, len(order) + 1)]
        for response in record.responses:
            annotator = usernames.get(response["user_id"], response["user_id"])
            annotators.add(annotator)
            statuses[response["status"]] += 1
            values = response.get("values") or {}
            answer = {name: (values.get(name) or {}).get("value") for name in (CORRECT_QUESTION, CORRECTED_RESPONSE, COMMENTS)}
            for position, model in enumerate(order, 1):
                rows.append({
                    "record_id": record.record_id, "task_id": task_id, "annotator": annotator, "model": model,
                    "position": position, "response_sha": shas[position - 1],
                    "score": (values.get(score_question(position)) or {}).get("value"),
                    "status": response["status"], "to_correct": _unblind(answer[CORRECT_QUESTION], order),
                    "corrected_response": answer[CORRECTED_RESPONSE] or None, "comments": answer[COMMENTS] or None,
                    "updated_at": _utc(response["updated_at"]),
                })
    rows.sort(key=lambda r: (r["task_id"], r["record_id"], r["annotator"], r["position"]))
    table = pa.Table.from_pylist(rows, schema=ANNOTATIONS.schema)
    return PullResult(table, len(records), annotated, dict(statuses), len(annotators), missing)


def _unblind(label: str | None, order: list[str]) -> str | None:
    """`response_2` means the model shown second; the other options keep their names."""
    if label is None or label in (COMBINATION, NEITHER):
        return label
    for position, model in enumerate(order, 1):
        if label == response_field(position):
            return model
    raise PipelineError(f"unknown option {label!r} in question {CORRECT_QUESTION}")


def _utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
