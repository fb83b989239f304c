"""Speed-ups for logging records: the same stored results, without Argilla's per-record overhead.

Measured on the stock bulk endpoint, most of the time went to two things that do no useful work here:
1. `Question.parsed_settings` / `MetadataProperty.parsed_settings` build a new pydantic `TypeAdapter` (a schema
   compilation) on every access, i.e. for every suggestion and metadata value validated. They now reuse one adapter.
2. Every created/updated record (and response, dataset) builds a webhook event (loading the dataset with its fields,
   questions, ... and serializing the record) that is then dropped when no webhook listens. Such an event is now
   built only when an enabled webhook subscribes to it, asked of the database where and when Argilla itself asks.
   Nothing is remembered between requests, so a webhook created, changed or deleted by any means (the API, another
   process, SQL) is heard by every change committed after it. Within one bulk request the answer is read once, after
   the records are committed (see `_listened_after_commit`). Events built before a deletion (`build_*_event_v1`)
   stay stock: they are checked when notified, after the deletion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from argilla_server.api.schemas.v1.questions import QuestionSettings
from argilla_server.bulk import records_bulk
from argilla_server.contexts import datasets as datasets_context
from argilla_server.contexts import distribution
from argilla_server.contexts import records as records_context
from argilla_server.models import MetadataProperty, Question, Webhook
from argilla_server.models.metadata_properties import MetadataPropertySettings
from argilla_server.models.mixins import CRUDMixin
from pydantic import TypeAdapter
from sqlalchemy import select, sql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

_QUESTION_SETTINGS = TypeAdapter(QuestionSettings)
_METADATA_SETTINGS = TypeAdapter(MetadataPropertySettings)
_BULK_MEMO = "annotation_server_listened_events"


async def _listened_events(db: AsyncSession) -> frozenset[str]:
    """The events some enabled webhook subscribes to, as the database says now."""
    subscriptions = await db.scalars(select(Webhook.events).where(Webhook.enabled == sql.true()))
    return frozenset(str(event) for events in subscriptions for event in events)


async def _listened_after_commit(db: AsyncSession) -> frozenset[str]:
    """For records_bulk's notify loops, which run after the records are committed and write nothing: the first
    answer in the loop's transaction serves the rest of that loop. A webhook committed later than that answer came
    after the records too. A new transaction (the next request, or a commit) asks again.

    Asking once per event instead took about 30% off the bulk path's records/s (bench/server_bulk.py).
    """
    memo = db.info.get(_BULK_MEMO)
    transaction = db.sync_session.get_transaction()
    if memo is None or transaction is None or memo[0] is not transaction:
        events = await _listened_events(db)
        memo = (db.sync_session.get_transaction(), events)  # the query began the transaction if none was open
        db.info[_BULK_MEMO] = memo
    return memo[1]


def _notify_only_if_listened(notify: Callable, listened: Callable) -> Callable:
    @functools.wraps(notify)
    async def wrapper(db: AsyncSession, event: Any, resource: Any) -> list:
        if str(event) not in await listened(db):
            return []
        return await notify(db, event, resource)

    return wrapper


def _executemany_upsert_many(stock: Callable) -> classmethod:
    """Argilla's upsert_many (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) with the rows passed as parameters.

    Stock builds `insert(...).values(rows)`: SQLAlchemy then compiles a new multi-row statement, bind parameter by
    bind parameter, on every call (the 512 suggestions of one SDK batch took more time than their validation).
    Passing the rows as executemany parameters runs the same statement over the same rows with one cached
    compilation (SQLAlchemy batches them into multi-row INSERTs itself: "insertmanyvalues").
    """

    async def upsert_many(cls, db: AsyncSession, objects: list, constraints: list, autocommit: bool = True) -> list:
        if len(objects) <= 1 or db.bind.dialect.name != "sqlite":
            return await stock(cls, db, objects, constraints, autocommit)
        values = [obj if isinstance(obj, dict) else obj.model_dump() for obj in objects]
        insert_stmt = sqlite_insert(cls)
        columns_to_update = {column: insert_stmt.excluded[column] for column in cls.__upsertable_columns__}
        if hasattr(cls, "updated_at"):
            columns_to_update["updated_at"] = datetime.utcnow()
        upsert_stmt = (
            insert_stmt.on_conflict_do_update(index_elements=constraints, set_=columns_to_update)
            .returning(cls)
            .execution_options(populate_existing=True)
        )
        result = await db.execute(upsert_stmt, values)
        if autocommit:
            await db.commit()
        return result.scalars().all()

    return classmethod(upsert_many)


def install() -> None:
    CRUDMixin.upsert_many = _executemany_upsert_many(CRUDMixin.__dict__["upsert_many"].__func__)
    Question.parsed_settings = property(lambda self: _QUESTION_SETTINGS.validate_python(self.settings))
    MetadataProperty.parsed_settings = property(lambda self: _METADATA_SETTINGS.validate_python(self.settings))

    # Every module that imported a notify function keeps its own reference: wrap each one. records_bulk notifies
    # only in its loops after the commit.
    for module in (records_bulk, distribution, records_context, datasets_context):
        listened = _listened_after_commit if module is records_bulk else _listened_events
        for name in ("notify_record_event_v1", "notify_response_event_v1", "notify_dataset_event_v1"):
            if hasattr(module, name):
                setattr(module, name, _notify_only_if_listened(getattr(module, name), listened))
