"""Everything applied to the stock argilla_server before serving it; returns the FastAPI app.

Order matters only in that the engine must be registered before the app's lifespan starts (it pings the engine).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event

from annotation_server import bulk, jobs, membership, startup


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """Per connection: WAL needs no fsync per commit (NORMAL is still crash-safe there); a bigger page cache."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB
    cursor.execute("PRAGMA temp_store = MEMORY")
    cursor.close()


def check_sqlite() -> None:
    """The engine needs FTS5 and the `->>` JSON operator (SQLite 3.38)."""
    if sqlite3.sqlite_version_info < (3, 38, 0):
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: the annotation server needs 3.38 or newer")
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
    except sqlite3.OperationalError as error:
        raise RuntimeError(f"this Python's SQLite has no FTS5 ({error})") from None
    finally:
        connection.close()


def apply(speedups: bool = True):
    check_sqlite()
    from argilla_server import _app
    from argilla_server.database import async_engine, sync_engine

    from annotation_server import engine  # noqa: F401  (registers the search engine)

    event.listen(async_engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(sync_engine, "connect", _sqlite_pragmas)
    startup.run_at_startup(_app.app)
    jobs.install(_app.app)
    if speedups:
        install_speedups()
    return _app.app


def install_speedups() -> None:
    """The faster request paths alone (what `--no-speedups` leaves out), also run under Argilla's own API tests."""
    bulk.install()
    membership.install()
