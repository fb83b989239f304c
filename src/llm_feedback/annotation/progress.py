"""How far each annotator is on the project's dataset, read the way pull reads it (every record with its responses,
over REST), so it works against a hosted Argilla as well as the embedded server."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from llm_feedback.annotation.annotators import get_json, usernames_by_id
from llm_feedback.annotation.connection import Target, reporting_errors
from llm_feedback.annotation.record_pages import ServerRecord, list_records
from llm_feedback.errors import PipelineError

STATUSES = ("submitted", "draft", "discarded")


@dataclass(frozen=True)
class AnnotatorProgress:
    annotator: str
    submitted: int
    draft: int
    discarded: int
    pending: int  # records still short of min_submitted submissions that this annotator has not answered at all


@dataclass(frozen=True)
class Progress:
    url: str
    workspace: str
    dataset: str
    records: int
    completed: int  # records with at least min_submitted submitted responses
    min_submitted: int
    annotators: tuple[AnnotatorProgress, ...]

    def lines(self) -> list[str]:
        """A heading, then one table: a column per count, right-aligned."""
        heading = (
            f"{self.workspace}/{self.dataset} at {self.url}: {self.records} records, {self.completed} completed "
            f"(min_submitted {self.min_submitted})"
        )
        header = ("annotator", *STATUSES, "pending")
        rows = [(a.annotator, *(str(getattr(a, c)) for c in header[1:])) for a in self.annotators]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        table = [
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in (header, *rows)
        ]
        return [heading, *table] if rows else [heading, "no annotators in the workspace and no responses yet"]

    def as_dict(self) -> dict:
        return asdict(self)


def dataset_progress(target: Target, *, workspace: str, dataset: str) -> Progress:
    """Per annotator (every annotator of the workspace, and anyone who answered): responses by status, and pending
    records as Argilla's task distribution counts them: a record is completed once it has min_submitted submitted
    responses, and pending for an annotator while it is not and they have not answered it (a draft or a discard is
    an answer: it is in their Draft or Discarded queue, not Pending)."""
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = target.client()
        http = client.http_client
        space = _workspace(http, url=target.url, name=workspace)
        found = _dataset(http, url=target.url, workspace=space, name=dataset)
        names = usernames_by_id(http)
        team = _annotators_of(http, space)
        records = list_records(client, found["id"], {}, "progress")
    min_submitted = int(found["distribution"]["min_submitted"])
    return Progress(
        url=target.url,
        workspace=workspace,
        dataset=dataset,
        records=len(records),
        completed=sum(_completed(r, min_submitted) for r in records),
        min_submitted=min_submitted,
        annotators=_per_annotator(records, team=team, names=names, min_submitted=min_submitted),
    )


def _workspace(http, *, url: str, name: str) -> dict:
    for space in get_json(http, "/api/v1/me/workspaces", doing="list workspaces")["items"]:
        if space["name"] == name:
            return space
    raise PipelineError(f"workspace {name!r} is not on {url}: check annotation.workspace, or run push first")


def _dataset(http, *, url: str, workspace: dict, name: str) -> dict:
    query = {"workspace_id": workspace["id"], "name": name}  # filters a server older than 2.8 may ignore
    items = get_json(http, "/api/v1/me/datasets", doing="list datasets", params=query)["items"]
    found = [d for d in items if d["name"] == name and d["workspace_id"] == workspace["id"]]
    if not found:
        raise PipelineError(
            f"dataset {workspace['name']}/{name} is not on {url}: check annotation.dataset, or run push first"
        )
    return found[0]


def _annotators_of(http, space: dict) -> list[str]:
    """The ids of the workspace's annotators: everyone who is expected to answer, answered or not."""
    users = get_json(http, f"/api/v1/workspaces/{space['id']}/users", doing="list a workspace's users")["items"]
    return [u["id"] for u in users if u["role"] == "annotator"]


def _completed(record: ServerRecord, min_submitted: int) -> bool:
    return sum(r["status"] == "submitted" for r in record.responses) >= min_submitted


def _per_annotator(
    records: Sequence[ServerRecord], *, team: list[str], names: dict[str, str], min_submitted: int
) -> tuple[AnnotatorProgress, ...]:
    """One row per annotator, by name: their responses counted by status, and the open records they have not
    answered."""
    counts: dict[str, Counter[str]] = {user_id: Counter() for user_id in team}
    answered: dict[str, set[str]] = {user_id: set() for user_id in team}
    for record in records:
        for response in record.responses:
            counts.setdefault(response["user_id"], Counter())[response["status"]] += 1
            answered.setdefault(response["user_id"], set()).add(record.uuid)
    open_records = {r.uuid for r in records if not _completed(r, min_submitted)}
    rows = [
        AnnotatorProgress(
            annotator=names.get(user_id, user_id),
            submitted=counts[user_id]["submitted"],
            draft=counts[user_id]["draft"],
            discarded=counts[user_id]["discarded"],
            pending=len(open_records - answered[user_id]),
        )
        for user_id in counts
    ]
    return tuple(sorted(rows, key=lambda row: row.annotator))
