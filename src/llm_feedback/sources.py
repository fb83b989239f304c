"""Task loaders (Hub dataset, local file, shipped sample) that all end in the `tasks` artifact.

Rows stream through in Arrow record batches: instructions are normalised, hashed and de-duplicated batch by batch,
so a 50k-row dataset is never copied into Python lists.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import yaml

from llm_feedback.artifacts import TASKS
from llm_feedback.errors import ConfigError, InputError
from llm_feedback.params import FetchParams, load_yaml, yaml_problem

BATCH_ROWS = 10_000
# A whole row must fit in one block; 64 MB leaves room for very long instructions.
TEXT_BLOCK_BYTES = 64 << 20
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SAMPLE_FIELDS = ("name", "topic", "difficulty", "instruction", "tests")
RESERVED_COLUMNS = set(TASKS.schema.names)
# Characters that show nothing: an instruction made only of these (zero-width spaces, BOMs, controls) and whitespace
# is as empty as a blank one.
INVISIBLE = r"[\p{Cf}\p{Cc}]"


@dataclass(frozen=True)
class Fetched:
    """The fetch stage's result: the `tasks` table and what was dropped on the way to it."""

    table: pa.Table
    source: str  # fetch.source: sample | file | hub
    rows_read: int
    empty_dropped: int
    duplicates_dropped: int

    @property
    def tasks(self) -> int:
        return self.table.num_rows

    def line(self, *, output: Path) -> str:
        return (
            f"{self.tasks} tasks -> {output} ({self.rows_read} rows read from {self.source}; "
            f"dropped {self.empty_dropped} empty and {self.duplicates_dropped} duplicate instructions)"
        )


def fetch_tasks(params: FetchParams, *, select: Callable[[pa.Table], pa.Table] | None = None) -> Fetched:
    """Load the configured source: the `tasks` table, shuffled, narrowed by `select` (fetch.held_out), then cut to
    `limit` when asked: `limit` counts the tasks kept, so held-out tasks are not cut to a tenth of it."""
    _check_keep_columns(params)
    batches, source = _open_source(params)
    keep = list(params.keep_columns)
    if params.source == "sample" and "tests" not in keep:
        keep.append("tests")
    table, rows, empty, duplicates = _collect(batches, source, params.instruction_column, keep, _where(params))
    if params.shuffle:
        order = np.random.default_rng(params.seed).permutation(table.num_rows)
        table = table.take(pa.array(order))
    if select is not None:
        table = select(table)
    if params.limit is not None:
        table = table.slice(0, params.limit)
    return Fetched(table, params.source, rows, empty, duplicates)


def task_ids(instructions: pa.Array) -> pa.Array:
    """First 16 hex digits of the SHA-256 of each (already normalised) instruction, read straight from Arrow buffers."""
    instructions = instructions.cast(pa.large_string())
    offsets = np.frombuffer(instructions.buffers()[1], dtype=np.int64)[
        instructions.offset : instructions.offset + len(instructions) + 1
    ]
    data = memoryview(instructions.buffers()[2] or b"")
    return pa.array(
        [hashlib.sha256(data[start:end]).hexdigest()[:16] for start, end in pairwise(offsets)],
        pa.string(),
    )


def normalize_instructions(instructions: pa.Array) -> pa.Array:
    """NFC, Unix line ends, no surrounding whitespace: the same task typed twice gets the same id."""
    text = pc.utf8_normalize(instructions.cast(pa.string()), "NFC")
    text = pc.replace_substring(text, "\r\n", "\n")
    return pc.utf8_trim_whitespace(text)


def has_visible_text(instructions: pa.Array) -> np.ndarray:
    """True where an instruction holds something other than whitespace and invisible characters."""
    visible = pc.utf8_trim_whitespace(pc.replace_substring_regex(instructions, INVISIBLE, ""))
    return pc.fill_null(pc.greater(pc.utf8_length(visible), 0), False).to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------------------------------------------------------------
# sources


def _open_source(params: FetchParams) -> tuple[Iterator[pa.RecordBatch], str]:
    if params.source == "hub":
        return _hub_batches(params), f"hub:{params.dataset}:{params.split}"
    path = params.path
    if not path.exists():
        raise ConfigError(f"params.yaml: fetch.path: {path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if params.source == "sample":
        return _sample_batches(path), f"sample:{path.name}"
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FILE_FORMATS)
        raise ConfigError(f"params.yaml: fetch.path: {path} has an unknown extension (expected one of {known})")
    return _file_batches(path, fmt, params.instruction_column), f"file:{path.name}"


def _hub_batches(params: FetchParams) -> Iterator[pa.RecordBatch]:
    import datasets

    try:
        dataset = datasets.load_dataset(params.dataset, split=params.split, revision=params.revision)
    except ValueError as e:
        message = str(e).splitlines()[0]
        if "split" in message.lower() or "instruction" in message.lower():
            raise ConfigError(f"params.yaml: fetch.split: {message}") from None
        raise InputError(f"fetch.dataset {params.dataset}: {message}") from None
    except FileNotFoundError as e:
        raise ConfigError(f"params.yaml: fetch.dataset: {str(e).splitlines()[0]}") from None
    except ConnectionError as e:
        raise InputError(
            f"fetch.dataset {params.dataset}: cannot reach the Hub ({str(e).splitlines()[0]}); "
            "check the network, or HF_HUB_OFFLINE=1 to use the local cache"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        raise ConfigError(f"params.yaml: fetch.split: must name a split (one of {', '.join(dataset)})")
    return (batch for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS) for batch in table.to_batches())


def _file_batches(path: Path, fmt: str, instruction_column: str) -> Iterator[pa.RecordBatch]:
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
        elif fmt == "csv":
            reader = pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(block_size=TEXT_BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(column_types={instruction_column: pa.string()}),
            )
            yield from reader
        else:
            yield from pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=TEXT_BLOCK_BYTES))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(_diagnose(path, fmt, e)) from None


def _sample_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The project's own task format: a YAML list of {name, topic, difficulty, instruction, tests}."""
    try:
        items = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({yaml_problem(e)})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a YAML list of tasks")
    for i, item in enumerate(items):
        missing = [f for f in SAMPLE_FIELDS if not isinstance(item, dict) or not isinstance(item.get(f), str)]
        if missing:
            raise InputError(f"{path}: task #{i}: missing or non-text field '{missing[0]}'")
    yield pa.RecordBatch.from_pylist(
        [{f: item[f] for f in SAMPLE_FIELDS} for item in items],
        schema=pa.schema([(f, pa.string()) for f in SAMPLE_FIELDS]),
    )


# ---------------------------------------------------------------------------------------------------------------------
# the shared streaming pass


def _collect(
    batches: Iterable[pa.RecordBatch], source: str, instruction_column: str, keep: list[str], where: str
) -> tuple[pa.Table, int, int, int]:
    """The tasks, and the rows read, the empty instructions dropped and the duplicates dropped."""
    seen: set[str] = set()
    out: list[pa.RecordBatch] = []
    rows = empty = duplicates = 0
    for batch in batches:
        batch = _decoded(batch)
        _check_columns(batch.schema, instruction_column, keep, where)
        try:
            batch.validate(full=True)
        except pa.ArrowInvalid as e:
            raise InputError(f"{where}: {_bad_text(where, e)}") from None
        n = batch.num_rows
        instructions = normalize_instructions(batch.column(instruction_column))
        present = has_visible_text(instructions)
        ids = task_ids(pc.fill_null(instructions, ""))
        fresh = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(present):
            task_id = ids[i].as_py()
            if task_id not in seen:
                seen.add(task_id)
                fresh[i] = True
        empty += n - int(present.sum())
        duplicates += int(present.sum() - fresh.sum())
        mask = pa.array(fresh)
        columns = {
            "task_id": ids.filter(mask),
            "instruction": instructions.filter(mask),
            "source": pa.array([source] * int(fresh.sum()), pa.string()),
            "source_row": pa.array(np.flatnonzero(fresh) + rows, pa.int64()),
        }
        for name in keep:
            columns[name] = batch.column(name).filter(mask)
        out.append(pa.RecordBatch.from_pydict(columns))
        rows += n
    if not out:
        raise InputError(f"{where}: has no rows")
    table = pa.Table.from_batches(out).combine_chunks()
    if table.num_rows == 0:
        raise InputError(f"{where}: no tasks left after dropping {empty} empty and {duplicates} duplicate instructions")
    return table, rows, empty, duplicates


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary-encoded (categorical) columns as plain ones: text stored compactly is still text."""
    if not any(pa.types.is_dictionary(field.type) for field in batch.schema):
        return batch
    columns = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _check_keep_columns(params: FetchParams) -> None:
    clash = RESERVED_COLUMNS.intersection(params.keep_columns) - {"instruction"}
    if clash or "instruction" in params.keep_columns:
        name = min(clash) if clash else "instruction"
        raise ConfigError(f"params.yaml: fetch.keep_columns: '{name}' is a column the pipeline writes itself")


def _check_columns(schema: pa.Schema, instruction_column: str, keep: list[str], where: str) -> None:
    available = ", ".join(schema.names)
    if instruction_column not in schema.names:
        raise InputError(
            f"{where}: no column '{instruction_column}' (set fetch.instruction_column; columns: {available})"
        )
    if not pa.types.is_string(schema.field(instruction_column).type) and not pa.types.is_large_string(
        schema.field(instruction_column).type
    ):
        raise InputError(
            f"{where}: column '{instruction_column}' holds {schema.field(instruction_column).type}, not text"
        )
    for name in keep:
        if name not in schema.names:
            raise InputError(f"{where}: no column '{name}' (listed in fetch.keep_columns; columns: {available})")


def _where(params: FetchParams) -> str:
    return f"dataset {params.dataset} [{params.split}]" if params.source == "hub" else str(params.path)


# ---------------------------------------------------------------------------------------------------------------------
# error diagnosis: only on the failure path, so it may re-read the file slowly to name the line at fault


def _diagnose(path: Path, fmt: str, error: Exception) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if fmt == "parquet":
        return f"{path}: not a readable parquet file ({message})"
    bad_utf8 = _first_bad_utf8_line(path)
    if bad_utf8 is not None:
        return f"{path}: line {bad_utf8}: not valid UTF-8 (re-save the file as UTF-8)"
    if "Empty" in message:
        return f"{path}: file has no rows"
    if "straddling" in message:
        return f"{path}: a row is larger than {TEXT_BLOCK_BYTES >> 20} MB"
    located = _first_bad_csv_row(path) if fmt == "csv" else _first_bad_json_line(path)
    return f"{path}: {located}" if located else f"{path}: {message}"


def _bad_text(where: str, error: pa.ArrowInvalid) -> str:
    path = Path(where)
    line = _first_bad_utf8_line(path) if path.is_file() else None
    return f"line {line}: not valid UTF-8 (re-save the file as UTF-8)" if line else str(error).splitlines()[0]


def _first_bad_utf8_line(path: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                return line + chunk[: e.start].count(b"\n")
            line += chunk.count(b"\n")
    return None


def _first_bad_csv_row(path: Path) -> str | None:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for row in reader:
            if len(row) != len(header):
                return f"line {reader.line_num}: expected {len(header)} fields like the header, got {len(row)}"
    return None


def _first_bad_json_line(path: Path) -> str | None:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {number}: not valid JSON ({e.msg})"
            if not isinstance(value, dict):
                return f"line {number}: expected a JSON object per line"
    return None
