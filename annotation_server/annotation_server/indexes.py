"""Extra SQLite indexes on Argilla's tables, so the engine's queries read indexes instead of whole records.

A record row stores its (often large) `fields` JSON before `metadata` and `status`, so reading those columns walks
each row's overflow pages. These indexes cover what listing, filtering and sorting read. They belong to SQLite only
(no table changes; Argilla's code never sees them) and are all named `annotation_*`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from annotation_server.sqlbits import identifier, member

GLOBAL_INDEXES = {
    # The listing: records of one dataset by status, with the columns sorting and paging read.
    "annotation_ix_records_listing": "records (dataset_id, status, inserted_at, updated_at, id)",
    # "My responses" (per user) and "responses with status" (any user), without reading response rows.
    "annotation_ix_responses_user": "responses (user_id, record_id, status)",
    "annotation_ix_responses_status": "responses (status, record_id)",
    # Records by id with their dataset and status: responses and suggestions meet their records through it.
    "annotation_ix_records_id": "records (id, dataset_id, status)",
    "annotation_ix_suggestions_question": "suggestions (question_id, record_id)",
    "annotation_ix_suggestions_value": "suggestions (question_id, (value ->> '$'), record_id)",
    "annotation_ix_suggestions_score": "suggestions (question_id, (score ->> '$'), record_id)",
    "annotation_ix_suggestions_agent": "suggestions (question_id, agent, record_id)",
}


def ensure_global_indexes(database_file: Path) -> None:
    with sqlite3.connect(database_file) as connection:
        for name, target in GLOBAL_INDEXES.items():
            connection.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
        connection.execute("PRAGMA optimize")


def metadata_index_name(key: str) -> str:
    return f"annotation_ix_md_{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


def metadata_index_sql(key: str) -> str:
    """One index per metadata key (shared by the datasets that use it), on its value and JSON type: filters, sorts,
    min/max and term counts read it in order. Lists are found by value too: a list's value is its JSON text, which
    starts with "[" (see `LIST_RANGE`). Written as SQLite keeps it in `sqlite_master.sql`, so the two compare."""
    value, json_value = member("metadata", key)
    name = identifier(metadata_index_name(key))
    return f"CREATE INDEX {name} ON records (dataset_id, {value}, json_type{json_value})"


# The metadata indexes a database holds, with the SQL SQLite kept for each.
STORED_METADATA_INDEXES = (
    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'annotation\\_ix\\_md\\_%' ESCAPE '\\'"
)


def metadata_index_repairs(*, key: str, stored_sql: str | None) -> list[str]:
    """Statements that leave `key` with the index this code builds, given the SQL of the one the database holds.

    An index built by an earlier version on another expression keeps its name under `IF NOT EXISTS`: filters on the
    key would then run unindexed, and an old path SQLite reads as malformed (`1e3`, `a[`) fails every insert. Such an
    index is dropped and built again; one that matches is left alone; a key no path can name keeps no index. A new
    index is created `IF NOT EXISTS` (SQLite keeps it without those words): another connection may build it first.
    """
    name = identifier(metadata_index_name(key))
    drop = [] if stored_sql is None else [f"DROP INDEX {name}"]
    try:
        wanted = metadata_index_sql(key)
    except ValueError:
        return drop
    if stored_sql == wanted:
        return []
    return [*drop, wanted.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)]


def list_range(value: str) -> str:
    """SQL: `value` is text from "[" up to (not including) "\\", where every JSON list's text falls; numbers sort
    before any text in SQLite. Lets the metadata index find lists by a range seek (check json_type as well)."""
    return f"{value} >= '[' AND {value} < '\\'"
