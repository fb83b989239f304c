"""push's side of adjudication: the `needs_review` metadata mark on the records whose annotators disagree.

push decides the mark from the responses it reads from the server anyway, through the same ranking as analyze's
`reports/disagreements.md` (disagreements.py): pull and analyze run after push, so push cannot read their output
without a cycle in the pipeline, and the server is where the responses are. The mark follows the responses: it goes
on when two annotators' scores of one answer are `analyze.disagreement_spread` or more apart, and comes off once
they are closer (an annotator changed a score). It is a plain "yes": nothing in it names a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from llm_feedback.annotation.dataset_settings import REVIEW_MARK, REVIEW_METADATA
from llm_feedback.annotation.pull import Answer, Asked
from llm_feedback.annotation.record_pages import ServerRecord
from llm_feedback.annotation.records import AnnotationRecord, task_of
from llm_feedback.disagreements import Rating, disagreeing, rank_disagreements
from llm_feedback.params import Params


@dataclass(frozen=True)
class ReviewMarks:
    """Which records carry the mark after this push (record ids)."""

    wanted: frozenset[str]

    @classmethod
    def read(cls, client, records: Sequence[ServerRecord], *, params: Params, responses: int) -> ReviewMarks:
        """From the records on the server, with `responses` answers each; annotators that
        `analyze.exclude_annotators` names count no more here than in analyze."""
        excluded = set(params.analyze.exclude_annotators)
        usernames = _usernames(client) if excluded else {}
        ratings = [
            rating
            for rating in ratings_on_server(
                records, asked=Asked.from_params(params, responses=responses), usernames=usernames
            )
            if rating.annotator not in excluded
        ]
        found = disagreeing(rank_disagreements(ratings), min_spread=params.analyze.disagreement_spread)
        return cls(frozenset(d.record_id for d in found))

    def marked(self, record: AnnotationRecord) -> AnnotationRecord:
        """A record about to be logged, with the mark as it should be."""
        return replace(record, metadata=self._metadata(record.record_id, record.metadata))

    def on_server(self, record: ServerRecord) -> ServerRecord:
        """A server record with the mark as it should be."""
        return replace(record, metadata=self._metadata(record.record_id, record.metadata))

    def changed(self, records: Iterable[ServerRecord], *, logged: set[str]) -> list[ServerRecord]:
        """The records this push would not log otherwise (`logged`: the ids it logs) whose mark must change, with
        the mark as it should be."""
        return [
            self.on_server(record)
            for record in records
            if record.record_id not in logged
            and (REVIEW_METADATA in record.metadata) != (record.record_id in self.wanted)
        ]

    def count(self) -> int:
        return len(self.wanted)

    def _metadata(self, record_id: str, metadata: dict) -> dict:
        kept = without_mark(metadata)
        return {**kept, REVIEW_METADATA: REVIEW_MARK} if record_id in self.wanted else kept


def without_mark(metadata: dict) -> dict:
    """Metadata as push builds it: the mark is decided apart, from the responses, so comparing a record on the server
    with the one push would log leaves it out."""
    return {k: v for k, v in metadata.items() if k != REVIEW_METADATA}


def ratings_on_server(records: Iterable[ServerRecord], *, asked: Asked, usernames: dict[str, str]) -> list[Rating]:
    """The submitted ratings on the server's records, a score per answer read as pull reads it (the total, or the
    sum of its criteria; a value off the rubric counts as no score). Annotators are named by `usernames` (user id ->
    username) where it knows them, else by user id."""
    ratings = []
    for record in records:
        task_id = task_of(record.record_id)
        for response in record.responses:
            if response["status"] != "submitted":
                continue
            scores = tuple(Answer.read(response, asked).scores)
            user = response["user_id"]
            ratings.append(Rating(record.record_id, task_id, usernames.get(user, user), scores))
    return ratings


def to_sdk(record: ServerRecord):  # -> argilla.Record
    """A record whose metadata alone changes: its fields as they are (responses and suggestions stay on the server)."""
    import argilla as rg

    return rg.Record(id=record.record_id, fields=record.fields, metadata=record.metadata)


def _usernames(client) -> dict[str, str]:
    found = client.http_client.get("/api/v1/users")
    found.raise_for_status()
    return {user["id"]: user["username"] for user in found.json()["items"]}
