"""Start-up maintenance of the engine's own storage, run in the app's lifespan before it serves."""

from __future__ import annotations

import contextlib

from argilla_server.database import async_engine

from annotation_server import fts, indexes


async def prepare_storage() -> None:
    """At start-up: every metadata key has its index as this code builds it (an index an earlier version built on
    another expression is rebuilt), every full-text index matches its dataset's records."""
    async with async_engine.begin() as conn:
        keys = {row[0] for row in await conn.exec_driver_sql("SELECT DISTINCT name FROM metadata_properties")}
        stored = dict((await conn.exec_driver_sql(indexes.STORED_METADATA_INDEXES)).all())
        for key in sorted(keys):
            stored_sql = stored.get(indexes.metadata_index_name(key))
            for statement in indexes.metadata_index_repairs(key=key, stored_sql=stored_sql):
                await conn.exec_driver_sql(statement)
        await fts.repair_all(conn)


def run_at_startup(app) -> None:
    """Wrap the app's lifespan so `prepare_storage` runs after Argilla's own start-up."""
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with original(a):
            await prepare_storage()
            yield

    app.router.lifespan_context = lifespan
