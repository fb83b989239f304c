"""`SQLiteSearchEngine`: Argilla's SearchEngine answered from Argilla's own SQL tables plus an FTS5 index.

Argilla's tables are the truth (records, responses, suggestions, vectors); the only state this engine keeps is the
full-text index (fts.py) and per-key metadata indexes (indexes.py), written by `create_index`, `index_records`,
`delete_records`, `delete_index`, `configure_metadata_property`. Responses, suggestions and record status are read
straight from their tables, so their update hooks have nothing to do. Semantics follow search_engine/commons.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from argilla_server.database import async_engine
from argilla_server.enums import SimilarityOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User, VectorSettings
from argilla_server.search_engine.base import (
    Filter,
    MetadataMetrics,
    Order,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server import ENGINE_NAME, __version__, fts, indexes, metrics, planner, vectors
from annotation_server.catalog import Catalog
from annotation_server.sqlbits import Params


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLiteSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> SQLiteSearchEngine:
        return cls()

    async def close(self) -> None:
        pass  # the connection pool is Argilla's, shared with the rest of the server

    async def ping(self) -> bool:
        async with async_engine.connect() as conn:
            return (await conn.exec_driver_sql("SELECT 1")).scalar() == 1

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "version": __version__, "sqlite": sqlite3.sqlite_version, "fts": "fts5"}

    # ---- index lifecycle -------------------------------------------------------------------------------------------

    async def create_index(self, dataset: Dataset) -> None:
        async with async_engine.begin() as conn:
            await fts.ensure(conn, dataset.id.hex)
            for name in (await Catalog.load(conn, dataset.id.hex)).metadata_types:
                await _index_metadata(conn, name)

    async def delete_index(self, dataset: Dataset) -> None:
        vectors.invalidate(dataset.id.hex)
        async with async_engine.begin() as conn:
            await fts.drop(conn, dataset.id.hex)

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        async with async_engine.begin() as conn:
            await _index_metadata(conn, metadata_property.name)

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        vectors.invalidate(vector_settings.dataset_id.hex)

    # ---- writes ----------------------------------------------------------------------------------------------------

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        items = [(record.id.hex, dict(record.fields or {})) for record in records]
        vectors.invalidate(dataset.id.hex)
        async with async_engine.begin() as conn:
            index = await fts.ensure(conn, dataset.id.hex)
            await fts.upsert(conn, index, items)

    async def partial_record_update(self, record: Record, **update) -> None:
        if "fields" in update:  # Argilla only sends `status`, which is read from the records table
            async with async_engine.begin() as conn:
                index = await fts.ensure(conn, record.dataset_id.hex)
                await fts.upsert(conn, index, [(record.id.hex, dict(update["fields"] or {}))])

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        ids = [record.id.hex for record in records]
        vectors.invalidate(dataset.id.hex)
        async with async_engine.begin() as conn:
            index = await fts.load(conn, dataset.id.hex)
            if index is not None:
                await fts.delete(conn, index, ids)

    async def update_record_response(self, response: Response) -> None:
        pass  # read from the responses table

    async def delete_record_response(self, response: Response) -> None:
        pass

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        pass  # read from the suggestions table

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        pass

    # ---- counts ----------------------------------------------------------------------------------------------------

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        async with async_engine.connect() as conn:
            return await metrics.dataset_progress(conn, dataset.id.hex)

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        async with async_engine.connect() as conn:
            return await metrics.user_progress(conn, dataset.id.hex, user.id.hex)

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        dataset_hex = metadata_property.dataset_id.hex
        kind = str(metadata_property.settings.get("type"))
        async with async_engine.connect() as conn:
            if kind == "terms":
                return await metrics.terms_metrics(conn, dataset_hex, metadata_property.name)
            if kind in ("integer", "float"):
                return await metrics.numeric_metrics(conn, dataset_hex, metadata_property.name, kind)
        return TermsMetrics(total=0)

    # ---- search ----------------------------------------------------------------------------------------------------

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any | None = None,
    ) -> SearchResponses:
        params = Params()
        async with async_engine.connect() as conn:
            plan = await planner.Plan.build(conn, dataset.id.hex, query, filter, params, ranked=not sort)
            if plan is None:
                return SearchResponses(items=[], total=0)
            if sort:
                order = await plan.builder.order_by(sort)
            elif user_id is not None:
                order = [planner.user_order_key(user_id, params)]
            else:
                order = ["r.inserted_at"]
        total, rows = await planner.count_and_page(plan, order, offset, limit, params)
        if plan.ranking is not None:
            items = [SearchResponseItem(record_id=_uuid(rid), score=-float(rank)) for rid, rank in rows]
        else:
            score = None if sort else 1.0  # Elasticsearch: no score when sorting, else match_all's 1.0
            items = [SearchResponseItem(record_id=_uuid(rid), score=score) for rid, _ in rows]
        return SearchResponses(items=items, total=total)

    # ---- vectors ---------------------------------------------------------------------------------------------------

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        dataset_hex = dataset.id.hex
        async with async_engine.connect() as conn:
            excluded = None
            if not value:
                excluded = record.id.hex
                row = (
                    await conn.exec_driver_sql(
                        "SELECT value FROM vectors WHERE record_id = :r AND vector_settings_id = :vs",
                        {"r": excluded, "vs": vector_settings.id.hex},
                    )
                ).first()
                value = json.loads(row[0]) if row else None
            if not value:
                raise ValueError("Cannot find a vector value to apply with provided info")
            if order == SimilarityOrder.least_similar:
                value = [-v for v in value]
            allowed = await self._allowed_ids(conn, dataset_hex, query, filter)
            data = await vectors.matrix(conn, dataset_hex, vector_settings.id.hex, vector_settings.dimensions)
        hits = vectors.nearest(data, value, max_results, allowed=allowed, excluded=excluded)
        items = [
            SearchResponseItem(record_id=_uuid(rid), score=score)
            for rid, score in hits
            if threshold is None or score >= threshold
        ]
        return SearchResponses(items=items, total=len(hits))

    async def _allowed_ids(
        self, conn: AsyncConnection, dataset_hex: str, query: TextQuery | str | None, filter: Filter | None
    ) -> set[str] | None:
        """Record ids passing the filter and text query (both act as filters in a similarity search), or None."""
        if filter is None and query is None:
            return None
        params = Params()
        plan = await planner.Plan.build(conn, dataset_hex, query, filter, params, ranked=False)
        if plan is None:
            return set()
        return await planner.record_ids(conn, plan, params)


async def _index_metadata(conn: AsyncConnection, name: str) -> None:
    """A metadata key's index as this code builds it, replacing one an earlier version left (see
    `indexes.metadata_index_repairs`); none for a name this SQLite cannot write in a JSON path (filters on it say
    so)."""
    index = indexes.metadata_index_name(name)
    found = await conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n", {"n": index})
    for statement in indexes.metadata_index_repairs(key=name, stored_sql=found.scalar()):
        await conn.exec_driver_sql(statement)


def _uuid(value: str) -> UUID:
    return UUID(hex=value)
