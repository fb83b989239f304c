"""Every completed generation, persisted the moment it arrives, keyed by what determines it.

SQLite commits each row on its own, so a run killed with SIGKILL loses at most the request in flight, and a rerun
asks only for what is missing. Only successes are kept: a failed request is asked again next time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class CachedGeneration:
    response: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    attempts: int


_COLUMNS = ", ".join(f.name for f in fields(CachedGeneration))


class GenerationCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (request_hash TEXT PRIMARY KEY, response TEXT NOT NULL, "
            "finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL NOT NULL, "
            "attempts INTEGER NOT NULL)"
        )

    def lookup(self, request_hashes: Iterable[str]) -> dict[str, CachedGeneration]:
        wanted = list(dict.fromkeys(request_hashes))
        found: dict[str, CachedGeneration] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT request_hash, {_COLUMNS} FROM generations WHERE request_hash IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((row[0], CachedGeneration(*row[1:])) for row in rows)
        return found

    def put(self, request_hash: str, generation: CachedGeneration) -> None:
        """Insert and commit at once; a second answer for the same request keeps the first."""
        self._db.execute(
            f"INSERT OR IGNORE INTO generations (request_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_hash, *astuple(generation)),
        )

    def put_many(self, items: Iterable[tuple[str, CachedGeneration]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR IGNORE INTO generations (request_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(h, *astuple(g)) for h, g in items],
            )

    def close(self) -> None:
        self._db.close()
