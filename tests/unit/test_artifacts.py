from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.artifacts import PROMPTS, TASKS, atomic_path, read_table, write_table
from llm_feedback.errors import InputError


def tasks_table(**extra: pa.Array) -> pa.Table:
    return pa.table(
        {
            "source": pa.array(["sample"], pa.string()),
            "task_id": pa.array(["0123456789abcdef"], pa.string()),
            "instruction": pa.array(["Write `f`."], pa.string()),
            "source_row": pa.array([0], pa.int64()),
            **extra,
        }
    )


def test_round_trip_puts_columns_in_contract_order_and_keeps_extras(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tasks.parquet"
    write_table(tasks_table(tests=pa.array(["assert True"])), path, TASKS)
    table = read_table(path, TASKS)
    assert table.column_names == ["task_id", "instruction", "source", "source_row", "tests"]
    assert table.column("tests").to_pylist() == ["assert True"]
    assert [p.name for p in path.parent.iterdir()] == ["tasks.parquet"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (tasks_table().drop_columns(["instruction"]), "missing column 'instruction'"),
        (
            tasks_table().set_column(3, "source_row", pa.array(["0"])),
            "column 'source_row' has type string, expected int64",
        ),
        (tasks_table().set_column(1, "task_id", pa.array([None], pa.string())), "column 'task_id' has nulls"),
    ],
)
def test_reads_name_file_and_column(tmp_path: Path, table: pa.Table, message: str) -> None:
    path = tmp_path / "tasks.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        read_table(path, TASKS)


def test_closed_artifact_rejects_unknown_columns(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unexpected column 'extra'"):
        PROMPTS.validate(
            pa.table(
                {name: pa.nulls(0, f.type) for name, f in zip(PROMPTS.schema.names, PROMPTS.schema)}
            ).append_column("extra", pa.nulls(0)),
            "x",
        )


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_table(tmp_path / "nope.parquet", TASKS)
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable parquet file"):
        read_table(tmp_path / "bad.parquet", TASKS)


def test_failed_write_keeps_the_previous_artifact_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.parquet"
    write_table(tasks_table(), path, TASKS)
    before = path.read_bytes()
    with pytest.raises(InputError):
        write_table(tasks_table().drop_columns(["source"]), path, TASKS)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half written")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.parquet"]


def test_an_output_that_is_a_folder_is_one_line_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "tasks.parquet"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(InputError, match=r"tasks.parquet: is a folder, so the file cannot be written there"):
        write_table(tasks_table(), folder, TASKS)
    assert [p.name for p in tmp_path.rglob("*")] == ["data", "tasks.parquet", "inside"], "no temporary file left"


def test_a_folder_output_where_a_file_is_or_under_a_file(tmp_path: Path) -> None:
    from llm_feedback.artifacts import atomic_folder

    (tmp_path / "reports").write_text("notes")
    with (
        pytest.raises(InputError, match=r"reports: is a file, so the folder cannot be written there"),
        atomic_folder(tmp_path / "reports"),
    ):
        pass
    assert (tmp_path / "reports").read_text() == "notes"
    with pytest.raises(InputError, match=r"reports/tasks.parquet: cannot be written: a part of its folder is a file"):
        write_table(tasks_table(), tmp_path / "reports" / "tasks.parquet", TASKS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
