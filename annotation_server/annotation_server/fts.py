"""The full-text index: one SQLite FTS5 table per dataset, one column per searchable record field.

Elasticsearch indexed each record's text, chat (message contents) and custom (as `str(value)`) fields and skipped
images; so does this. An FTS5 row's rowid is its record's rowid in `records`, so text hits meet record filters as
integers, without a join. `annotation_fts_ids_<dataset>` maps rowid -> record id: records are deleted before the
engine hears of it, and SQLite's VACUUM may renumber rowids, so `repair` (run at each start) drops entries whose
rowid no longer holds their record and indexes records that have no entry (e.g. a crash between Argilla's commit and
`index_records`). `annotation_fts_meta` remembers which field each column holds. A dataset with no index yet
(published by a server without this engine) is indexed from its records the first time it is needed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server.sqlbits import Params

TOKENIZER = "unicode61 remove_diacritics 0 tokenchars '_'"
"""Close to Elasticsearch's standard analyzer: Unicode word boundaries, lowercase, accents kept, `foo_bar` one word."""

BATCH = 500
_LOGGER = logging.getLogger("annotation_server.fts")
_META_DDL = "CREATE TABLE IF NOT EXISTS annotation_fts_meta (dataset_id CHAR(32) PRIMARY KEY, columns JSON NOT NULL)"


@dataclasses.dataclass(frozen=True)
class FtsColumn:
    name: str  # FTS5 column: c0, c1, ...
    field: str  # Argilla field name
    type: str  # text | chat | custom


@dataclasses.dataclass(frozen=True)
class FtsIndex:
    dataset_hex: str
    columns: tuple[FtsColumn, ...]

    @property
    def table(self) -> str:
        return f"annotation_fts_{self.dataset_hex}"

    @property
    def ids_table(self) -> str:
        return f"annotation_fts_ids_{self.dataset_hex}"

    def columns_for(self, field: str | None) -> list[str] | None:
        """FTS5 columns to search: all (None) or one field's; [] when that field is not indexed (e.g. an image)."""
        if field is None:
            return None
        return [column.name for column in self.columns if column.field == field]

    def matching_rowids(self, match: str) -> str:
        """SQL: the record rowids whose text matches the FTS5 expression bound at `match`."""
        return f"SELECT rowid FROM {self.table} WHERE {self.table} MATCH {match}"


def field_text(field_type: str, value: Any) -> str:
    if value is None:
        return ""
    if field_type == "text":
        return value if isinstance(value, str) else str(value)
    if field_type == "chat" and isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)  # custom fields: Elasticsearch indexed `str(value)` too


async def load(conn: AsyncConnection, dataset_hex: str) -> FtsIndex | None:
    await conn.exec_driver_sql(_META_DDL)
    row = (
        await conn.exec_driver_sql(
            "SELECT columns FROM annotation_fts_meta WHERE dataset_id = :ds", {"ds": dataset_hex}
        )
    ).first()
    if row is None:
        return None
    return FtsIndex(dataset_hex, tuple(FtsColumn(**column) for column in json.loads(row[0])))


async def ensure(conn: AsyncConnection, dataset_hex: str) -> FtsIndex:
    """The dataset's index, created (and filled from its records) if it does not exist yet."""
    index = await load(conn, dataset_hex)
    if index is not None:
        return index
    fields = (
        await conn.exec_driver_sql(
            "SELECT name, json_extract(settings, '$.type') FROM fields WHERE dataset_id = :ds "
            "ORDER BY inserted_at, name",
            {"ds": dataset_hex},
        )
    ).all()
    searchable = [(name, kind) for name, kind in fields if kind != "image"]
    index = FtsIndex(
        dataset_hex, tuple(FtsColumn(f"c{i}", name, kind or "text") for i, (name, kind) in enumerate(searchable))
    )
    column_list = ", ".join(column.name for column in index.columns) or "c0"
    await conn.exec_driver_sql(
        f'CREATE VIRTUAL TABLE IF NOT EXISTS {index.table} USING fts5({column_list}, tokenize="{TOKENIZER}")'
    )
    await conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {index.ids_table} (rowid INTEGER PRIMARY KEY, record_id CHAR(32) NOT NULL UNIQUE)"
    )
    await conn.exec_driver_sql(
        "INSERT OR IGNORE INTO annotation_fts_meta (dataset_id, columns) VALUES (:ds, :columns)",
        {"ds": dataset_hex, "columns": json.dumps([dataclasses.asdict(c) for c in index.columns])},
    )
    await _index_missing(conn, index)
    return index


async def repair(conn: AsyncConnection, index: FtsIndex) -> int:
    """Make the index match the records table again; returns how many entries were dropped or added."""
    stale = [
        row[0]
        for row in await conn.exec_driver_sql(
            f"SELECT m.rowid FROM {index.ids_table} m LEFT JOIN records r ON r.rowid = m.rowid "
            f"WHERE r.id IS NULL OR r.id != m.record_id"
        )
    ]
    await _delete_rowids(conn, index, stale)
    added = await _index_missing(conn, index)
    if stale or added:
        _LOGGER.warning(
            "full-text index of dataset %s repaired: %d dropped, %d added", index.dataset_hex, len(stale), added
        )
    return len(stale) + added


async def repair_all(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql(_META_DDL)
    datasets = [row[0] for row in await conn.exec_driver_sql("SELECT dataset_id FROM annotation_fts_meta")]
    for dataset_hex in datasets:
        exists = (await conn.exec_driver_sql("SELECT 1 FROM datasets WHERE id = :ds", {"ds": dataset_hex})).first()
        if exists is None:  # deleted while its index was kept (a crash in between)
            await drop(conn, dataset_hex)
            continue
        index = await load(conn, dataset_hex)
        if index is not None:
            await repair(conn, index)


async def _index_missing(conn: AsyncConnection, index: FtsIndex) -> int:
    added = 0
    while True:
        rows = (
            await conn.exec_driver_sql(
                f"SELECT r.id, r.fields FROM records r WHERE r.dataset_id = :ds "
                f"AND r.rowid NOT IN (SELECT rowid FROM {index.ids_table}) LIMIT :n",
                {"ds": index.dataset_hex, "n": BATCH},
            )
        ).all()
        if not rows:
            return added
        await upsert(conn, index, [(record_id, json.loads(fields or "{}")) for record_id, fields in rows])
        added += len(rows)


async def upsert(conn: AsyncConnection, index: FtsIndex, records: Sequence[tuple[str, dict]]) -> None:
    """Index (or re-index) records given as (id hex, fields dict)."""
    for start in range(0, len(records), BATCH):
        chunk = records[start : start + BATCH]
        params = Params()
        ids = params.many([record_id for record_id, _ in chunk])
        rowids = {
            record_id: rowid
            for rowid, record_id in await conn.exec_driver_sql(
                f"SELECT rowid, id FROM records WHERE id IN ({ids})", params.values
            )
        }
        old = [
            row[0]
            for row in await conn.exec_driver_sql(
                f"SELECT rowid FROM {index.ids_table} WHERE record_id IN ({ids}) "
                f"UNION SELECT rowid FROM {index.ids_table} WHERE rowid IN ({Params.inline(rowids.values())})",
                params.values,
            )
        ]
        await _delete_rowids(conn, index, old)
        found = [(record_id, fields) for record_id, fields in chunk if record_id in rowids]
        if not found:
            continue
        await conn.exec_driver_sql(
            f"INSERT INTO {index.ids_table} (rowid, record_id) VALUES (:rowid, :id)",
            [{"rowid": rowids[record_id], "id": record_id} for record_id, _ in found],
        )
        if index.columns:
            names = ", ".join(column.name for column in index.columns)
            values = ", ".join(f":{column.name}" for column in index.columns)
            await conn.exec_driver_sql(
                f"INSERT INTO {index.table} (rowid, {names}) VALUES (:rowid, {values})",
                [
                    {"rowid": rowids[rid], **{c.name: field_text(c.type, fields.get(c.field)) for c in index.columns}}
                    for rid, fields in found
                ],
            )


async def delete(conn: AsyncConnection, index: FtsIndex, record_ids: Iterable[str]) -> None:
    record_ids = list(record_ids)
    for start in range(0, len(record_ids), BATCH):
        params = Params()
        chunk = params.many(record_ids[start : start + BATCH])
        rows = await conn.exec_driver_sql(
            f"SELECT rowid FROM {index.ids_table} WHERE record_id IN ({chunk})", params.values
        )
        await _delete_rowids(conn, index, [row[0] for row in rows])


async def drop(conn: AsyncConnection, dataset_hex: str) -> None:
    await conn.exec_driver_sql(_META_DDL)
    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS annotation_fts_{dataset_hex}")
    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS annotation_fts_ids_{dataset_hex}")
    await conn.exec_driver_sql("DELETE FROM annotation_fts_meta WHERE dataset_id = :ds", {"ds": dataset_hex})


async def _delete_rowids(conn: AsyncConnection, index: FtsIndex, rowids: list[int]) -> None:
    if not rowids:
        return
    params = [{"rowid": rowid} for rowid in rowids]
    await conn.exec_driver_sql(f"DELETE FROM {index.table} WHERE rowid = :rowid", params)
    await conn.exec_driver_sql(f"DELETE FROM {index.ids_table} WHERE rowid = :rowid", params)
