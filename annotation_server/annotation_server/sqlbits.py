"""Small helpers to write SQLite SQL by hand: bound parameters, literals, JSON member expressions.

The engine's queries go through `exec_driver_sql` (sqlite3's own `:name` parameters): SQLAlchemy's `text()` would
read a `:word` inside a quoted JSON key as a parameter. JSON keys are inlined as SQL literals (never as parameters)
so that a query's expression matches the expression index built for it character for character.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    if key.startswith("$"):  # `->` would read a leading "$" as a JSON path
        if '"' in key:
            raise ValueError(f"unsupported JSON key {key!r}")
        path = literal(f'$."{key}"')
    else:
        path = literal(key)
    return f"({column} ->> {path})", f"({column} -> {path})"


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
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(str(value))
    except ValueError:
        return None
    return int(number) if number.is_integer() and abs(number) < 2**63 else number
