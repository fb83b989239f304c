from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from llm_feedback.errors import ConfigError, InputError
from llm_feedback.params import FetchParams
from llm_feedback.sources import Fetched, fetch_tasks
from tests.conftest import PROJECT_ROOT

ROWS = [
    {"instruction": "Write a function `a`.", "id": 1},
    {"instruction": "  Write a function `a`.\r\n", "id": 2},  # same task once normalised
    {"instruction": "", "id": 3},
    {"instruction": None, "id": 4},
    {"instruction": "Write a function `b` that returns 'é'.", "id": 5},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    pa_csv.write_csv(pa.Table.from_pylist(rows), path)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def fetch_file(path: Path, **kwargs) -> Fetched:
    return fetch_tasks(FetchParams(source="file", path=path, **kwargs))


@pytest.mark.parametrize("writer", [write_jsonl, write_csv, write_parquet])
def test_file_formats_agree_and_drop_empty_and_duplicates(tmp_path: Path, writer) -> None:
    suffix = {write_jsonl: ".jsonl", write_csv: ".csv", write_parquet: ".parquet"}[writer]
    rows = ROWS if writer is not write_csv else [{**r, "instruction": r["instruction"] or ""} for r in ROWS]
    fetched = fetch_file(writer(tmp_path / f"tasks{suffix}", rows), keep_columns=["id"])
    table = fetched.table
    assert table.column("instruction").to_pylist() == [
        "Write a function `a`.",
        "Write a function `b` that returns 'é'.",
    ]
    assert table.column("id").to_pylist() == [1, 5]
    assert table.column("source_row").to_pylist() == [0, 4]
    assert table.column("source").to_pylist() == [f"file:tasks{suffix}"] * 2
    expected_id = hashlib.sha256(b"Write a function `a`.").hexdigest()[:16]
    assert table.column("task_id")[0].as_py() == expected_id
    assert (fetched.rows_read, fetched.empty_dropped, fetched.duplicates_dropped, fetched.tasks) == (5, 2, 1, 2)
    assert fetched.line(output=Path("data/tasks.parquet")) == (
        "2 tasks -> data/tasks.parquet (5 rows read from file; dropped 2 empty and 1 duplicate instructions)"
    )


def test_sample_keeps_tests_and_has_stable_ids() -> None:
    params = FetchParams(source="sample", path=PROJECT_ROOT / "data/sample/tasks.yaml")
    fetched = fetch_tasks(params)
    table, again = fetched.table, fetch_tasks(params).table
    assert fetched.tasks >= 40 and fetched.duplicates_dropped == 0
    assert "tests" in table.column_names and all(t.strip() for t in table.column("tests").to_pylist())
    assert table.column("task_id").to_pylist() == again.column("task_id").to_pylist()
    assert len(set(table.column("task_id").to_pylist())) == table.num_rows


def test_duplicates_across_batches_are_dropped_while_streaming(tmp_path: Path) -> None:
    rows = [{"instruction": f"task {i % 15_000}"} for i in range(25_000)]  # spans three 10k batches
    fetched = fetch_file(write_parquet(tmp_path / "big.parquet", rows))
    table = fetched.table
    assert fetched.tasks == 15_000 and fetched.duplicates_dropped == 10_000
    assert table.column("source_row").to_pylist() == list(range(15_000))


def test_limit_and_seeded_shuffle(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": f"task {i}"} for i in range(50)])
    first = fetch_file(path, limit=5)
    assert first.table.column("instruction").to_pylist() == [f"task {i}" for i in range(5)]
    assert (first.tasks, first.rows_read) == (5, 50)
    a, b, c = (fetch_file(path, shuffle=True, seed=seed, limit=10).table for seed in (1, 1, 2))
    assert a.column("task_id").to_pylist() == b.column("task_id").to_pylist()
    assert a.column("task_id").to_pylist() != c.column("task_id").to_pylist()
    assert a.num_rows == 10


def test_hub_dataset_with_split_slice(tmp_path: Path) -> None:
    folder = tmp_path / "self-oss-instruct"
    (folder / "data").mkdir(parents=True)
    rows = [{"instruction": f"Write `f{i}`.", "response": f"def f{i}(): pass"} for i in range(30)]
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", rows)
    fetched = fetch_tasks(FetchParams(source="hub", dataset=str(folder), split="train[:20]", keep_columns=["response"]))
    table = fetched.table
    assert fetched.tasks == 20 and fetched.source == "hub"
    assert table.column("response").to_pylist()[3] == "def f3(): pass"
    assert table.column("source")[0].as_py() == f"hub:{folder}:train[:20]"


@pytest.mark.parametrize("split", ["train[:abc]", "validation"])
def test_hub_split_rejected_by_datasets_names_the_param(tmp_path: Path, split: str) -> None:
    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", [{"instruction": "x"}])
    with pytest.raises(ConfigError, match=r"^params.yaml: fetch.split: "):
        fetch_tasks(FetchParams(source="hub", dataset=str(folder), split=split))


def test_long_instruction_is_kept_whole(tmp_path: Path) -> None:
    long = "Write a function `big`. " + "x" * 1_000_000
    for writer, suffix in [(write_jsonl, ".jsonl"), (write_csv, ".csv")]:
        table = fetch_file(writer(tmp_path / f"long{suffix}", [{"instruction": long}, {"instruction": "short"}])).table
        assert table.column("instruction")[0].as_py() == long


def bad_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "t.jsonl",
            b'{"prompt": "x"}\n',
            r"t.jsonl: no column 'instruction' \(set fetch.instruction_column; columns: prompt\)",
        ),
        ("t.csv", b"prompt\nx\n", r"t.csv: no column 'instruction'"),
        ("t.csv", b"", r"t.csv: file is empty"),
        ("t.jsonl", b"", r"t.jsonl: file is empty"),
        ("t.parquet", b"", r"t.parquet: file is empty"),
        ("t.csv", b"instruction,x\n", r"t.csv: has no rows"),
        ("t.csv", b'instruction,x\n" ",1\n', r"t.csv: no tasks left after dropping 1 empty and 0 duplicate"),
        (
            "t.csv",
            b'instruction,x\n"a",1\n"b",2,3\n"c",4\n',
            r"t.csv: line 3: expected 2 fields like the header, got 3",
        ),
        ("t.csv", b'instruction,x\n"a",1\n"b\xff\xfe",2\n', r"t.csv: line 3: not valid UTF-8"),
        ("t.jsonl", b'{"instruction": "a"}\n{"instruction": "b\xff"}\n', r"t.jsonl: line 2: not valid UTF-8"),
        ("t.jsonl", b'{"instruction": "a"}\n{"instruction": \n', r"t.jsonl: line 2: not valid JSON"),
        ("t.jsonl", b'{"instruction": 3}\n', r"t.jsonl: column 'instruction' holds int64, not text"),
        ("t.parquet", b"PAR1 not parquet", r"t.parquet: not a readable parquet file"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        fetch_file(bad_file(tmp_path, name, content))
    assert "\n" not in str(error.value)


def test_bad_params_for_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fetch.path: .*missing.jsonl does not exist"):
        fetch_file(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"fetch.path: .* unknown extension"):
        fetch_file(bad_file(tmp_path, "t.xlsx", b"x"))
    with pytest.raises(ConfigError, match=r"fetch.keep_columns: 'task_id'"):
        fetch_file(write_jsonl(tmp_path / "k.jsonl", ROWS), keep_columns=["task_id"])
    with pytest.raises(InputError, match=r"no column 'nope' \(listed in fetch.keep_columns"):
        fetch_file(write_jsonl(tmp_path / "k.jsonl", ROWS), keep_columns=["nope"])


INVISIBLE_ONLY = ["\u200b", "\u200c\u200d", " \u2060\ufeff ", "\n\u200b\t", "\ufeff"]


@pytest.mark.parametrize("writer", [write_jsonl, write_csv, write_parquet])
def test_instructions_of_only_invisible_characters_are_dropped_as_empty(tmp_path: Path, writer) -> None:
    suffix = {write_jsonl: ".jsonl", write_csv: ".csv", write_parquet: ".parquet"}[writer]
    rows = [{"instruction": text} for text in INVISIBLE_ONLY] + [{"instruction": "Write `z`.\u200b"}]
    fetched = fetch_file(writer(tmp_path / f"t{suffix}", rows))
    table = fetched.table
    assert table.column("instruction").to_pylist() == ["Write `z`.\u200b"], "visible text keeps its characters"
    assert (fetched.empty_dropped, fetched.tasks) == (len(INVISIBLE_ONLY), 1)


def test_a_file_of_only_invisible_instructions_has_no_tasks(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"no tasks left after dropping {len(INVISIBLE_ONLY)} empty"):
        fetch_file(write_jsonl(tmp_path / "t.jsonl", [{"instruction": text} for text in INVISIBLE_ONLY]))


def test_a_categorical_text_column_is_text(tmp_path: Path) -> None:
    import pandas as pd

    rows = [{"instruction": f"task {i % 12_000}", "topic": ["io", "math", "text"][i % 3]} for i in range(25_000)]
    frame = pd.DataFrame(rows).astype({"instruction": "category", "topic": "category"})
    frame.to_parquet(tmp_path / "categorical.parquet")
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "categorical.parquet").field("instruction").type)
    fetched = fetch_file(tmp_path / "categorical.parquet", keep_columns=["topic"])
    table, plain = (
        fetched.table,
        fetch_file(write_parquet(tmp_path / "plain.parquet", rows), keep_columns=["topic"]).table,
    )
    assert (fetched.tasks, fetched.duplicates_dropped) == (12_000, 13_000)
    assert table.schema.field("topic").type == pa.string()
    assert table.select(["task_id", "instruction", "source_row", "topic"]).equals(
        plain.select(["task_id", "instruction", "source_row", "topic"])
    )


def test_a_key_given_twice_in_the_sample_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "- name: a\n  topic: t\n  difficulty: easy\n  instruction: Write a.\n  tests: assert True\n"
        "  instruction: Write b.\n"
    )
    with pytest.raises(InputError) as error:
        fetch_tasks(FetchParams(source="sample", path=path))
    assert str(error.value) == (
        f"{path}: not valid YAML (line 6, column 3: [0].instruction is given twice (first at line 4); keep one)"
    )
