"""How a search becomes SQL: the WHERE clause over `records r`, the order, and the count and page queries.

Relevance (a text query without a sort) ranks FTS5 hits by bm25; everything else is a query over `records r`.
The count and the page run at the same time on two pooled connections (SQLite in WAL mode has concurrent readers,
aiosqlite runs each connection in its own thread). A text query nested deeper than FTS5 parses is refused with a
ValueError (Argilla's HTTP 422), whose one line names the query's problem and shows no SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from argilla_server.database import async_engine
from argilla_server.search_engine.base import Filter, TextQuery
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server import fts
from annotation_server.catalog import Catalog
from annotation_server.filters import EVERYTHING, FilterBuilder
from annotation_server.sqlbits import Params
from annotation_server.text_query import FTS5_TOO_DEEP, QueryTooComplex, compile_query

_PRIME = 2147483647  # 2**31 - 1


def user_order_key(user_id: Any, params: Params) -> str:
    """A stable pseudo-random order per user (Elasticsearch seeded `random_score` with the user id).

    A keyed hash of the record's rowid: affine map modulo a prime, xorshift (SQLite has no XOR operator:
    x ^ y = (x | y) - (x & y)), affine map again. Integer arithmetic on a column every index holds, so the default
    listing never reads a record row to order it. (A single affine map leaves some users' order close to insertion
    order.)
    """
    digest = hashlib.sha256(str(user_id).encode("utf-8")).digest()
    a, b, c, d = (1 + int.from_bytes(digest[i : i + 8], "big") % (_PRIME - 1) for i in (0, 8, 16, 24))
    first = f"(((r.rowid % {_PRIME}) * {params(a)} + {params(b)}) % {_PRIME})"
    mixed = f"(({first} | ({first} >> 11)) - ({first} & ({first} >> 11)))"
    return f"(({mixed} * {params(c)} + {params(d)}) % {_PRIME})"


class Plan:
    """The WHERE clause of a search over `records r`, and the FTS5 table + MATCH parameter if it ranks by relevance."""

    def __init__(self, builder: FilterBuilder, where: str, filtered: bool, ranking: tuple[str, str] | None):
        self.builder = builder
        self.where = where
        self.filtered = filtered  # conditions beyond "in this dataset"
        self.ranking = ranking

    @classmethod
    async def build(
        cls,
        conn: AsyncConnection,
        dataset_hex: str,
        query: TextQuery | str | None,
        filter: Filter | None,
        params: Params,
        ranked: bool,
    ) -> Plan | None:
        """None when the text query can match nothing (no searchable word, or a field that is not indexed)."""
        builder = FilterBuilder(conn, await Catalog.load(conn, dataset_hex), params)
        conditions = [await builder.condition(filter)]
        ranking = None
        if query is not None:
            text = TextQuery(q=query) if isinstance(query, str) else query
            index = await fts.load(conn, dataset_hex)
            if index is None:  # never indexed: build it now (a dataset published by a server without this engine)
                async with async_engine.begin() as writer:
                    index = await fts.ensure(writer, dataset_hex)
            columns = index.columns_for(text.field)
            compiled = compile_query(text.q, columns) if columns != [] else None
            if compiled is None:
                return None
            match = params(compiled.expression)
            if compiled.negated:
                conditions.append(f"r.rowid NOT IN ({index.matching_rowids(match)})")
            elif ranked:
                ranking = (index.table, match)
            else:
                conditions.append(f"r.rowid IN ({index.matching_rowids(match)})")
        extra = [c for c in conditions if c != EVERYTHING]
        where = " AND ".join([f"r.dataset_id = {params(dataset_hex)}", *extra])
        return cls(builder, where, bool(extra), ranking)


async def count_and_page(
    plan: Plan, order: list[str], offset: int, limit: int, params: Params
) -> tuple[int, list[tuple[str, float | None]]]:
    """(total, [(record id hex, bm25 rank or None)]) for one page."""
    window = f"LIMIT {params(limit)} OFFSET {params(offset)}"
    if plan.ranking is not None:  # relevance: bm25, ties in indexing order
        fts_table, match = plan.ranking
        restrict = (
            f"AND +{fts_table}.rowid IN (SELECT r.rowid FROM records r WHERE {plan.where})" if plan.filtered else ""
        )
        hits = f"FROM {fts_table} WHERE {fts_table} MATCH {match} {restrict}"
        count_sql = f"SELECT count(*) {hits}"
        page_sql = (
            f"SELECT r.id, h.rank FROM (SELECT rowid AS rid, bm25({fts_table}) AS rank {hits} "
            f"ORDER BY rank, rid {window}) h JOIN records r ON r.rowid = h.rid ORDER BY h.rank, h.rid"
        )
    else:
        count_sql = f"SELECT count(*) FROM records r WHERE {plan.where}"
        page_sql = f"SELECT r.id, NULL FROM records r WHERE {plan.where} ORDER BY {', '.join(order)}, r.rowid {window}"
    # Two connections, two threads: the count and the page run at the same time (SQLite in WAL mode).
    with _refusing_deep_text_queries():
        total, rows = await asyncio.gather(_scalar(count_sql, params), _rows(page_sql, params))
    return int(total or 0), [(rid, rank) for rid, rank in rows]


async def record_ids(conn: AsyncConnection, plan: Plan, params: Params) -> set[str]:
    """Ids (hex) of every record the plan selects: a similarity search's filter and text query."""
    with _refusing_deep_text_queries():
        rows = (await conn.exec_driver_sql(f"SELECT r.id FROM records r WHERE {plan.where}", params.values)).all()
    return {record_id for (record_id,) in rows}


@contextlib.contextmanager
def _refusing_deep_text_queries() -> Iterator[None]:
    """FTS5 parses a MATCH expression as the query runs: one nested deeper than its parser holds is refused."""
    try:
        yield
    except OperationalError as error:
        if FTS5_TOO_DEEP in str(error.orig):
            raise QueryTooComplex() from None
        raise


async def _scalar(sql: str, params: Params) -> Any:
    async with async_engine.connect() as conn:
        return (await conn.exec_driver_sql(sql, params.values)).scalar()


async def _rows(sql: str, params: Params) -> list:
    async with async_engine.connect() as conn:
        return (await conn.exec_driver_sql(sql, params.values)).all()
