"""Small helpers to write SQLite SQL by hand: bound parameters, literals, JSON member expressions.

The engine's queries go through `exec_driver_sql` (sqlite3's own `:name` parameters): SQLAlchemy's `text()` would
read a `:word` inside a quoted JSON key as a parameter. JSON keys are inlined as SQL literals (never as parameters)
so that a query's expression matches the expression index built for it character for character.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from typing import Any
from uuid import UUID


class Params:
    """Collects bound values; calling it with a value returns the placeholder to put in the SQL."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"

    def many(self, values: Iterable[Any]) -> str:
        return ", ".join(self(value) for value in values) or "NULL"

    @staticmethod
    def inline(numbers: Iterable[int]) -> str:
        """Integers written into the SQL (safe: they go through int()); "NULL" for none."""
        return ", ".join(str(int(number)) for number in numbers) or "NULL"


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def member(column: str, key: str) -> tuple[str, str]:
    """(SQL value, JSON text) of `column[key]`: `->>` yields TEXT/INTEGER/REAL (JSON text for arrays), `->` JSON."""
    path = literal(json_path(key))
    return f"({column} ->> {path})", f"({column} -> {path})"


def json_path(key: str) -> str:
    """The right operand of `->` and `->>` that reads the object member `key`, whatever characters it holds.

    An ordinary name is written as itself, which SQLite reads as `$.name` (the metadata indexes of existing databases
    were built on that expression). A name SQLite would read as a path or misread (empty; a leading `$` or digit; a
    `.`, `[`, `"`, `\\`, control or non-ASCII character) is quoted, `$."name"`, escaped as SQLAlchemy stores it
    (json.dumps): SQLite before 3.45 compares a name with the stored text, which spells `í` as `\\u00ed`.
    Raises ValueError when this SQLite cannot name the key at all.
    """
    if key and key[0] not in "$0123456789" and not any(c in '.["\\' or not " " <= c < "\x7f" for c in key):
        return key
    return _quoted_path(key)


@functools.lru_cache(maxsize=1024)
def _quoted_path(key: str) -> str:
    """SQLite 3.47+ reads a quoted name's `\\"`; earlier versions end the name at that quote, and those before 3.45
    compare an unquoted name with the stored (escaped) text, so there a name with a `"` and no `.` or `[` is written
    unquoted. Which form this SQLite reads is asked of it, on the key itself."""
    escaped = json.dumps(key)[1:-1]
    stored = json.dumps({key: 1})
    with closing(sqlite3.connect(":memory:")) as db:
        for path in (f'$."{escaped}"', f"$.{escaped}"):
            try:
                if db.execute("SELECT ? ->> ?", (stored, path)).fetchone() == (1,):
                    return path
            except sqlite3.OperationalError:  # a malformed path
                continue
    raise ValueError(f"SQLite {sqlite3.sqlite_version} cannot name the JSON key {key!r} in a path")


def uuid_hex(value: Any) -> str | None:
    """Argilla stores UUIDs as 32 hex characters (SQLAlchemy's Uuid type on SQLite); None if `value` is no UUID."""
    if isinstance(value, UUID):
        return value.hex
    try:
        return UUID(str(value)).hex
    except ValueError:
        return None


def numeric_variants(values: Iterable[str]) -> list[Any]:
    """Each string plus its number, if it is one: Elasticsearch matches "3" against a numeric 3, SQLite does not."""
    out: list[Any] = []
    for value in values:
        out.append(value)
        number = as_number(value)
        if number is not None:
            out.append(number)
    return out


def as_number(value: Any) -> int | float | None:
    """An int or float for a number or numeric text (integers exact: float() rounds them past 2**53), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    try:
        number: int | float = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        if number.is_integer():
            number = int(number)
    return number if isinstance(number, float) or -(2**63) <= number < 2**63 else float(number)
