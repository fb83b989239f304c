"""Every completed generation, persisted the moment it arrives, keyed by what determines it.

SQLite commits each row on its own, so a run killed with SIGKILL loses at most the request in flight, and a rerun
asks only for what is missing. Only successes are kept: a failed request is asked again next time. A cache that is
not a database (garbage, truncated) stops the stage with one line before anything is asked or written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from llm_feedback.errors import InputError


@dataclass(frozen=True)
class CachedGeneration:
    response: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    attempts: int


_COLUMNS = ", ".join(f.name for f in fields(CachedGeneration))
_INSERT = f"INSERT OR IGNORE INTO generations (request_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


class GenerationCache:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._sqlite_errors():
            self._db = sqlite3.connect(path, isolation_level=None)
        try:
            with self._sqlite_errors():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS generations (request_hash TEXT PRIMARY KEY, response TEXT NOT NULL, "
                    "finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL NOT NULL, "
                    "attempts INTEGER NOT NULL)"
                )
                # Reads every page (~0.2 s for 400 MB): a truncated file fails here, not halfway through a paid run.
                (verdict,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise sqlite3.DatabaseError(verdict)
                # An empty answer is no answer; earlier versions kept some as successes: ask for them again.
                self._db.execute("DELETE FROM generations WHERE trim(response, ' \t\r\n') = ''")
        except InputError:
            self._db.close()
            raise

    def lookup(self, request_hashes: Iterable[str]) -> dict[str, CachedGeneration]:
        wanted = list(dict.fromkeys(request_hashes))
        found: dict[str, CachedGeneration] = {}
        with self._sqlite_errors():
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = self._db.execute(
                    f"SELECT request_hash, {_COLUMNS} FROM generations "
                    f"WHERE request_hash IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                found.update((row[0], CachedGeneration(*row[1:])) for row in rows)
        return found

    def put(self, request_hash: str, generation: CachedGeneration) -> None:
        """Insert and commit at once; a second answer for the same request keeps the first."""
        with self._sqlite_errors():
            self._db.execute(_INSERT, (request_hash, *astuple(generation)))

    def put_many(self, items: Iterable[tuple[str, CachedGeneration]]) -> None:
        with self._sqlite_errors(), self._db:
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT, [(h, *astuple(g)) for h, g in items])

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """SQLite's failures as one line naming the file; a corrupt one says what to do about it."""
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError):
            raise  # the project's own mistake, not the file's
        except sqlite3.DatabaseError as e:
            if type(e) is sqlite3.DatabaseError:  # "file is not a database", "database disk image is malformed"
                raise InputError(
                    f"{self._path}: the request cache is corrupt ({e}); delete it and rerun "
                    "(answers already in the stage's output artifact are kept, the others are asked again)"
                ) from None
            raise InputError(f"{self._path}: cannot use the request cache ({e})") from None
