"""The annotation server's hand-written SQL pieces, run on a real SQLite: bound values stay values, literals and
identifiers round-trip whatever they hold, and a JSON member expression reads the member and matches its index."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from uuid import UUID

import pytest

from annotation_server.sqlbits import Params, as_number, identifier, literal, member, numeric_variants, uuid_hex
from tests.unit.conftest import imports_beyond_stdlib

HOSTILE_TEXT = [
    "plain",
    "it's",
    "''",
    "'; DROP TABLE records; --",
    '"quoted"',
    "back\\slash",
    ":p0",
    ":name",
    "?",
    "?1",
    "$x",
    "@x",
    "%",
    "line\nbreak",
    "tab\t",
    "日本語",
    "😀",
    "-- comment",
    "/* c */",
    "Robert'); DROP TABLE x;--",
    " ",
]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


def test_the_helpers_need_only_the_standard_library() -> None:
    assert imports_beyond_stdlib("annotation_server.sqlbits") == set()


def test_each_value_gets_its_own_placeholder_and_stays_a_value(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, name TEXT)")
    params = Params()
    placeholders = [(params(i), params(text)) for i, text in enumerate(HOSTILE_TEXT)]
    assert len({p for pair in placeholders for p in pair}) == 2 * len(HOSTILE_TEXT), "one placeholder per value"
    rows = ", ".join(f"({i}, {text})" for i, text in placeholders)
    db.execute(f"INSERT INTO records (id, name) VALUES {rows}", params.values)
    assert [name for (name,) in db.execute("SELECT name FROM records ORDER BY id")] == HOSTILE_TEXT
    assert db.execute("SELECT count(*) FROM records").fetchone() == (len(HOSTILE_TEXT),), "no statement was injected"


def test_many_values_in_one_list_and_an_empty_list_matches_nothing(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), ("2",), (None,), ("it's",)])
    params = Params()
    wanted = params.many([2, "it's", 7])
    assert set(db.execute(f"SELECT x FROM t WHERE x IN ({wanted})", params.values)) == {(2,), ("it's",)}
    empty = Params()
    assert db.execute(f"SELECT count(*) FROM t WHERE x IN ({empty.many([])})", empty.values).fetchone() == (0,)
    assert empty.values == {}, "no value bound for an empty list"


def test_inline_writes_only_integers(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (None,)])
    assert db.execute(f"SELECT x FROM t WHERE x IN ({Params.inline([2, 5])})").fetchall() == [(2,)]
    assert db.execute(f"SELECT count(*) FROM t WHERE x IN ({Params.inline([])})").fetchone() == (0,)
    with pytest.raises(ValueError):
        Params.inline(["1); DROP TABLE t; --"])


@pytest.mark.parametrize("text", HOSTILE_TEXT + ["", "a" * 10_000])
def test_a_literal_is_the_same_text_back(db: sqlite3.Connection, text: str) -> None:
    assert db.execute(f"SELECT {literal(text)}, typeof({literal(text)})").fetchone() == (text, "text")


@pytest.mark.parametrize("name", ["plain", 'say "hi"', '""', "select", "two words", "it's", "日本語", "a.b", "[x]"])
def test_an_identifier_names_exactly_its_table_and_column(db: sqlite3.Connection, name: str) -> None:
    db.execute(f"CREATE TABLE {identifier(name)} ({identifier(name)} TEXT, other TEXT)")
    db.execute(f"INSERT INTO {identifier(name)} ({identifier(name)}) VALUES ('v')")
    assert db.execute(f"SELECT {identifier(name)} FROM {identifier(name)}").fetchall() == [("v",)]
    assert [row[1] for row in db.execute(f"PRAGMA table_info({identifier(name)})")] == [name, "other"]


METADATA = {
    "plain": "text",
    "number": 3,
    "real": 2.5,
    "flag": True,
    "nothing": None,
    "list": [1, "two"],
    "object": {"k": 1},
    "with space": "s",
    "it's": "quote",
    ":p0": "colon",
    "$x": "dollar",
    "$": "just dollar",
    "$.a": "path-like",
    "-dash": "dash",
    "a.b": ["dotted"],
    'q"k': 2.5,
    "": "empty",
}


@pytest.fixture
def records(db: sqlite3.Connection) -> sqlite3.Connection:
    db.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, dataset_id TEXT, metadata JSON)")
    db.execute("INSERT INTO records (dataset_id, metadata) VALUES ('d', ?)", (json.dumps(METADATA),))
    db.execute("INSERT INTO records (dataset_id, metadata) VALUES ('d', '{}')")
    return db


@pytest.mark.parametrize("key", list(METADATA))
def test_a_member_reads_that_key_of_the_json(records: sqlite3.Connection, key: str) -> None:
    value, json_value = member("metadata", key)
    expected = METADATA[key]
    got, got_json, kind = records.execute(
        f"SELECT {value}, {json_value}, json_type{json_value} FROM records ORDER BY id"
    ).fetchall()[0]
    scalar = json.dumps(expected, separators=(",", ":")) if isinstance(expected, (list, dict)) else expected
    assert got == (int(scalar) if isinstance(scalar, bool) else scalar), "->> gives SQL values, JSON text for lists"
    assert json.loads(got_json) == expected
    assert (
        kind
        == {
            str: "text",
            int: "integer",
            float: "real",
            bool: "true",
            type(None): "null",
            list: "array",
            dict: "object",
        }[type(expected)]
    )
    assert records.execute(f"SELECT {value} FROM records ORDER BY id").fetchall()[1] == (None,), "absent: NULL"


def test_a_member_key_is_a_literal_so_the_expression_index_serves_it(records: sqlite3.Connection) -> None:
    value, json_value = member("metadata", "$x")
    records.execute(f"CREATE INDEX ix ON records (dataset_id, {value}, json_type{json_value})")
    params = Params()
    query = f"SELECT id FROM records WHERE dataset_id = {params('d')} AND {value} = {params('dollar')}"
    plan = " ".join(row[-1] for row in records.execute(f"EXPLAIN QUERY PLAN {query}", params.values))
    assert "USING INDEX ix (dataset_id=? AND <expr>=?)" in plan, plan
    assert records.execute(query, params.values).fetchall() == [(1,)]
    bound = Params()
    path = bound('$."$x"')
    as_parameter = f"SELECT id FROM records WHERE dataset_id = {bound('d')} AND (metadata ->> {path}) = {bound('x')}"
    plan = " ".join(row[-1] for row in records.execute(f"EXPLAIN QUERY PLAN {as_parameter}", bound.values))
    assert "<expr>" not in plan, "a bound key does not match the indexed expression (why keys are inlined)"


def test_an_ordinary_name_keeps_the_expression_existing_indexes_were_built_on() -> None:
    assert member("metadata", "plain") == ("(metadata ->> 'plain')", "(metadata -> 'plain')")
    assert member("metadata", "it's plain") == ("(metadata ->> 'it''s plain')", "(metadata -> 'it''s plain')")
    assert member("metadata", "país") == ("(metadata ->> '$.\"pa\\u00eds\"')", "(metadata -> '$.\"pa\\u00eds\"')")
    assert member("metadata", "$x") == ("(metadata ->> '$.\"$x\"')", "(metadata -> '$.\"$x\"')")


def test_a_quoted_key_is_served_by_its_expression_index(records: sqlite3.Connection) -> None:
    value, json_value = member("metadata", "a.b")
    records.execute(f"CREATE INDEX ix ON records (dataset_id, {value}, json_type{json_value})")
    params = Params()
    query = f"SELECT id FROM records WHERE dataset_id = {params('d')} AND {value} = {params('x')}"
    plan = " ".join(row[-1] for row in records.execute(f"EXPLAIN QUERY PLAN {query}", params.values))
    assert "USING INDEX ix (dataset_id=? AND <expr>=?)" in plan, plan


PATH_LIKE = ["a.b", "x[0]", 'q"k', "", "$", "$.a", '$a"b', "0", "12", "1e3", "1 ", "[0]", "a[", "back\\slash", "tab\t"]
PATH_LIKE += ["\x7f", "a.país"]


@pytest.mark.parametrize("key", PATH_LIKE)
def test_a_member_reads_a_key_that_looks_like_a_path(db: sqlite3.Connection, key: str) -> None:
    value, _ = member("m", key)
    stored = json.dumps({"a": {"b": 2}, "x": [3], "q": 4, "0": 5, key: 1})  # SQLAlchemy's json.dumps
    assert db.execute(f"SELECT {value} FROM (SELECT ? AS m)", (stored,)).fetchone() == (1,)


@pytest.mark.parametrize("key", ['a."b', 'x["0"]'])
def test_a_key_this_sqlite_cannot_name_in_a_path_is_refused_by_name(db: sqlite3.Connection, key: str) -> None:
    """Before 3.47 SQLite ends a quoted name at its first `"`, and reads an unquoted one as a path at `.` or `[`."""
    try:
        value, _ = member("m", key)
    except ValueError as error:
        assert sqlite3.sqlite_version_info < (3, 47) and repr(key) in str(error)
        return
    stored = json.dumps({"a": {"b": 2}, "x": [3], key: 1})
    assert db.execute(f"SELECT {value} FROM (SELECT ? AS m)", (stored,)).fetchone() == (1,)


@pytest.mark.parametrize("key", ["país", "日本"])
def test_a_member_reads_a_key_beyond_ascii_as_sqlalchemy_stores_it(db: sqlite3.Connection, key: str) -> None:
    value, _ = member("m", key)
    assert db.execute(f"SELECT {value} FROM (SELECT ? AS m)", (json.dumps({key: 1}),)).fetchone() == (1,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UUID("12345678-1234-5678-1234-567812345678"), "12345678123456781234567812345678"),
        ("12345678-1234-5678-1234-567812345678", "12345678123456781234567812345678"),
        ("12345678123456781234567812345678", "12345678123456781234567812345678"),
        ("{12345678-1234-5678-1234-567812345678}", "12345678123456781234567812345678"),
        ("ABCDEF00-1234-5678-1234-567812345678", "abcdef00123456781234567812345678"),
        ("not-a-uuid", None),
        ("", None),
        (None, None),
        (42, None),
        ("1234567812345678123456781234567", None),
    ],
)
def test_uuid_hex_is_argillas_stored_form_or_none(value: object, expected: str | None) -> None:
    assert uuid_hex(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (2.5, 2.5),
        ("3", 3),
        ("3.0", 3),
        ("-0", 0),
        ("2.5", 2.5),
        ("1e3", 1000),
        (" 7 ", 7),
        ("1e19", 1e19),
        (True, None),
        (False, None),
        ("three", None),
        ("", None),
        (None, None),
        ("0x10", None),
    ],
)
def test_as_number(value: object, expected: object) -> None:
    got = as_number(value)
    assert got == expected and type(got) is type(expected)


def test_as_number_keeps_nan_and_infinity_out_of_integers() -> None:
    assert math.isnan(as_number("nan")) and as_number("inf") == math.inf and as_number("-inf") == -math.inf


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9007199254740993", 2**53 + 1),
        ("-9007199254740993", -(2**53) - 1),
        (" 9223372036854775807 ", 2**63 - 1),
        ("9223372036854775808", 2.0**63),  # past SQLite's 64-bit integers: a float, as SQLite compares it
    ],
)
def test_as_number_keeps_a_large_integer_exact(value: str, expected: int | float) -> None:
    got = as_number(value)
    assert got == expected and type(got) is type(expected)


def test_a_large_integer_matches_only_itself(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, metadata JSON)")
    db.executemany("INSERT INTO t (metadata) VALUES (?)", [(json.dumps({"n": n}),) for n in (2**53, 2**53 + 1)])
    value, _ = member("metadata", "n")
    params = Params()
    hits = db.execute(
        f"SELECT id FROM t WHERE {value} IN ({params.many([as_number('9007199254740993')])})", params.values
    )
    assert hits.fetchall() == [(2,)]


def test_numeric_variants_match_text_and_numbers_as_elasticsearch_does(db: sqlite3.Connection) -> None:
    assert numeric_variants(["3", "x", "2.5", "1e3"]) == ["3", 3, "x", "2.5", 2.5, "1e3", 1000]
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, metadata JSON)")
    db.executemany(
        "INSERT INTO t (metadata) VALUES (?)",
        [(json.dumps({"k": v}),) for v in (3, "3", 3.0, 2.5, "x", "1e3", 1000, 4)],
    )
    value, _ = member("metadata", "k")
    params = Params()
    hits = db.execute(
        f"SELECT id FROM t WHERE {value} IN ({params.many(numeric_variants(['3', '1e3']))}) ORDER BY id", params.values
    ).fetchall()
    assert [i for (i,) in hits] == [1, 2, 3, 6, 7], "3, '3' and 3.0 for '3'; '1e3' and 1000 for '1e3'"
