"""Counts the UI shows: dataset progress, a user's progress, metadata term counts and numeric ranges.

Shapes follow commons.py. Term counts mirror a `terms` aggregation on a keyword field: `total` counts values (a list
counts each item), each bucket counts records, buckets sort by count (desc) then term; numbers and booleans become
their JSON text ("3", "true") as keywords do.
"""

from __future__ import annotations

from typing import Any

from argilla_server.search_engine.base import FloatMetadataMetrics, IntegerMetadataMetrics, TermsMetrics
from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server.indexes import list_range
from annotation_server.sqlbits import member

MAX_TERMS = 2**14  # commons.py's max_terms_size


async def dataset_progress(conn: AsyncConnection, dataset_hex: str) -> dict:
    rows = await conn.exec_driver_sql(
        "SELECT status, count(*) FROM records WHERE dataset_id = :ds GROUP BY status", {"ds": dataset_hex}
    )
    counts = {status: count for status, count in rows}
    return {"total": sum(counts.values()), **counts} if counts else {"total": 0}


async def user_progress(conn: AsyncConnection, dataset_hex: str, user_hex: str) -> dict:
    """The user's responses in the dataset by status: {"total": n, "submitted": ..., "draft": ..., ...}.

    (commons.py's aggregation counted every response status of the records the user answered, other users'
    included; this counts the user's own, which is what the UI's "my progress" means.)
    CROSS JOIN keeps SQLite going from the user's responses to their records, not the other way round.
    """
    rows = await conn.exec_driver_sql(
        "SELECT x.status, count(*) FROM responses x CROSS JOIN records r ON r.id = x.record_id "
        "WHERE x.user_id = :user AND r.dataset_id = :ds GROUP BY x.status",
        {"user": user_hex, "ds": dataset_hex},
    )
    counts = {status: count for status, count in rows}
    return {"total": sum(counts.values()), **counts} if counts else {"total": 0}


async def terms_metrics(conn: AsyncConnection, dataset_hex: str, key: str) -> TermsMetrics:
    value, json_value = member("r.metadata", key)
    scalars = await conn.exec_driver_sql(
        f"SELECT json_type{json_value} AS t, {value} AS v, count(*) FROM records r "
        f"WHERE r.dataset_id = :ds AND {value} IS NOT NULL AND json_type{json_value} != 'array' GROUP BY t, v",
        {"ds": dataset_hex},
    )
    lists = await conn.exec_driver_sql(
        f"SELECT j.type, j.value, count(DISTINCT r.rowid), count(*) FROM records r, json_each({value}) j "
        f"WHERE r.dataset_id = :ds AND {list_range(value)} AND json_type{json_value} = 'array' "
        f"GROUP BY j.type, j.value",
        {"ds": dataset_hex},
    )
    records: dict[str, int] = {}
    total = 0
    for kind, raw, count in scalars:
        term = _keyword(kind, raw)
        records[term] = records.get(term, 0) + count
        total += count
    for kind, raw, record_count, value_count in lists:
        if kind in ("array", "object", "null"):
            continue
        term = _keyword(kind, raw)
        records[term] = records.get(term, 0) + record_count
        total += value_count
    buckets = sorted(records.items(), key=lambda item: (-item[1], item[0]))[: min(total, MAX_TERMS)]
    return TermsMetrics(total=total, values=[TermsMetrics.TermCount(term=t, count=c) for t, c in buckets])


async def numeric_metrics(
    conn: AsyncConnection, dataset_hex: str, key: str, kind: str
) -> IntegerMetadataMetrics | FloatMetadataMetrics:
    value, _ = member("r.metadata", key)
    row = (
        await conn.exec_driver_sql(
            f"SELECT min({value}), max({value}) FROM records r "
            f"WHERE r.dataset_id = :ds AND {value} IS NOT NULL AND typeof({value}) IN ('integer', 'real')",
            {"ds": dataset_hex},
        )
    ).one()
    if kind == "integer":
        return IntegerMetadataMetrics(min=_cast(row[0], int), max=_cast(row[1], int))
    return FloatMetadataMetrics(min=_cast(row[0], float), max=_cast(row[1], float))


def _keyword(kind: str, raw: Any) -> str:
    if kind in ("true", "false"):
        return kind
    if kind == "real" and float(raw).is_integer():
        return str(float(raw))
    return str(raw)


def _cast(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)
