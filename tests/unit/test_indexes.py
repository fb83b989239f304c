"""Start-up repair of the metadata indexes, on a real SQLite database: an index an earlier version built on another
expression is rebuilt on the one filters now use; one that matches is left as it is."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotation_server import indexes
from annotation_server.sqlbits import Params, identifier, member


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "argilla.db")
    connection.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, dataset_id TEXT, metadata JSON)")
    yield connection
    connection.close()


def stored(db: sqlite3.Connection) -> dict[str, tuple[str, int]]:
    """Each metadata index's SQL and root page (a rebuilt index gets new pages)."""
    rows = db.execute(indexes.STORED_METADATA_INDEXES).fetchall()
    pages = dict(db.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'index'").fetchall())
    return {name: (sql, pages[name]) for name, sql in rows}


def repair(db: sqlite3.Connection, keys: list[str]) -> None:
    """What start-up does, on this connection."""
    held = {name: sql for name, (sql, _) in stored(db).items()}
    for key in keys:
        for statement in indexes.metadata_index_repairs(key=key, stored_sql=held.get(indexes.metadata_index_name(key))):
            db.execute(statement)


def old_index(db: sqlite3.Connection, key: str) -> None:
    """The index an earlier version built: the key written unquoted, as SQLite reads `$.key`."""
    path = "'" + key.replace("'", "''") + "'"
    name = identifier(indexes.metadata_index_name(key))
    db.execute(f"CREATE INDEX {name} ON records (dataset_id, (metadata ->> {path}), json_type(metadata -> {path}))")


def plan(db: sqlite3.Connection, key: str, value: object) -> str:
    params = Params()
    expression, _ = member("metadata", key)
    query = f"SELECT id FROM records WHERE dataset_id = {params('d')} AND {expression} = {params(value)}"
    return " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", params.values))


@pytest.mark.parametrize("key", ["país", "a.b", "x[0]"])
def test_an_index_on_an_earlier_expression_is_rebuilt_on_the_current_one(db: sqlite3.Connection, key: str) -> None:
    old_index(db, key)
    name = indexes.metadata_index_name(key)
    assert "<expr>" not in plan(db, key, "v"), "the old index does not serve the current expression"
    repair(db, [key])
    sql, _ = stored(db)[name]
    assert sql == indexes.metadata_index_sql(key)
    assert f"USING INDEX {name} (dataset_id=? AND <expr>=?)" in plan(db, key, "v")
    db.execute("INSERT INTO records (dataset_id, metadata) VALUES ('d', ?)", (json.dumps({key: "v"}),))
    assert db.execute(
        f"SELECT id FROM records WHERE dataset_id = 'd' AND {member('metadata', key)[0]} = 'v'"
    ).fetchall() == [(1,)]


@pytest.mark.parametrize("key", ["1e3", "a[", "1 "])
def test_an_old_index_whose_path_fails_inserts_is_rebuilt(db: sqlite3.Connection, key: str) -> None:
    old_index(db, key)
    row = json.dumps({"a": [1], key: 1})
    with pytest.raises(sqlite3.OperationalError, match="JSON path error"):
        db.execute("INSERT INTO records (dataset_id, metadata) VALUES ('d', ?)", (row,))
    repair(db, [key])
    db.execute("INSERT INTO records (dataset_id, metadata) VALUES ('d', ?)", (row,))
    assert f"USING INDEX {indexes.metadata_index_name(key)}" in plan(db, key, 1)


def test_a_current_index_is_left_alone_and_a_missing_one_is_built(db: sqlite3.Connection) -> None:
    db.execute(indexes.metadata_index_sql("plain"))
    db.execute(indexes.metadata_index_sql("a.b"))
    before = stored(db)
    assert indexes.metadata_index_repairs(key="plain", stored_sql=before[indexes.metadata_index_name("plain")][0]) == []
    repair(db, ["plain", "a.b", "new"])
    after = stored(db)
    assert {name: after[name] for name in before} == before, "same SQL, same pages: not rebuilt"
    assert set(after) - set(before) == {indexes.metadata_index_name("new")}


def test_a_key_no_path_can_name_loses_its_old_index(db: sqlite3.Connection) -> None:
    key = 'a."b'
    try:
        member("metadata", key)
    except ValueError:
        pass
    else:
        pytest.skip(f"SQLite {sqlite3.sqlite_version} names {key!r}")
    db.execute(f"CREATE INDEX {identifier(indexes.metadata_index_name(key))} ON records (dataset_id)")
    repair(db, [key])
    assert stored(db) == {}
