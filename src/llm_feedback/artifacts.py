"""The schema of every artifact the stages exchange, with atomic writes and validated reads.

A stage that dies mid-write must never leave a file that the next stage (or DVC) takes for a finished one,
and a stage that reads an artifact from an older version must say which column changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llm_feedback.errors import InputError

MESSAGE = pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False)])


@dataclass(frozen=True)
class ArtifactSchema:
    """Required columns of one artifact; `open_ended` artifacts may carry more (e.g. the kept source columns).
    `added`: nullable columns the contract gained later, read as all null from an artifact written before."""

    name: str
    schema: pa.Schema
    open_ended: bool = False
    added: tuple[str, ...] = ()

    def validate(self, table: pa.Table, where: str) -> pa.Table:
        """Check names, types and nulls; return the table with its columns in contract order."""
        for field in self.schema:
            if field.name not in table.column_names and field.name in self.added:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            if field.name not in table.column_names:
                raise InputError(f"{where}: missing column '{field.name}' ({self.name} artifact)")
            actual = table.schema.field(field.name).type
            if not actual.equals(field.type):
                raise InputError(f"{where}: column '{field.name}' has type {actual}, expected {field.type}")
            if not field.nullable and table.column(field.name).null_count:
                raise InputError(f"{where}: column '{field.name}' has nulls ({self.name} artifact)")
        extra = [c for c in table.column_names if c not in self.schema.names]
        if extra and not self.open_ended:
            raise InputError(f"{where}: unexpected column '{extra[0]}' ({self.name} artifact)")
        return table.select(self.schema.names + extra)


TASKS = ArtifactSchema(
    "tasks",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("instruction", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("source_row", pa.int64(), nullable=False),
        ]
    ),
    open_ended=True,
)

PROMPTS = ArtifactSchema(
    "prompts",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("messages", pa.list_(MESSAGE), nullable=False),
            pa.field("prompt", pa.string()),
            pa.field("template_sha", pa.string()),
        ]
    ),
)

GENERATIONS = ArtifactSchema(
    "generations",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("response", pa.string()),
            pa.field("finish_reason", pa.string()),
            pa.field("prompt_tokens", pa.int64()),
            pa.field("completion_tokens", pa.int64()),
            pa.field("latency_s", pa.float64()),
            pa.field("attempts", pa.int64(), nullable=False),
            pa.field("error", pa.string()),
            pa.field("request_hash", pa.string(), nullable=False),
        ]
    ),
)

# The judge's verdict on one answer, with the annotators' 0-7 rubric; push turns scores into suggestions.
JUDGMENTS = ArtifactSchema(
    "judgments",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("judge", pa.string(), nullable=False),
            pa.field("score", pa.int64()),  # null when the judge's answer could not be used (see error)
            pa.field("rationale", pa.string()),
            pa.field("error", pa.string()),
            pa.field("answer", pa.string()),  # the judge's raw answer, kept for audit and as a request cache
            pa.field("request_hash", pa.string(), nullable=False),
        ]
    ),
)

# The judge's pairwise verdicts, asked in both orders: a preference counts only when both orders agree.
JUDGE_PAIRWISE = ArtifactSchema(
    "judge pairwise",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model_a", pa.string(), nullable=False),
            pa.field("model_b", pa.string(), nullable=False),
            pa.field("judge", pa.string(), nullable=False),
            pa.field("a_first", pa.string()),  # preferred model (or "tie") with model_a shown first
            pa.field("b_first", pa.string()),  # ... with model_b shown first
            pa.field("verdict", pa.string()),  # the agreed model, or "tie" (including when the orders disagree)
            pa.field("error", pa.string()),
        ]
    ),
)

# The outcome of running one answer's code with the task's tests; push shows the status to annotators.
EXECUTIONS = ArtifactSchema(
    "executions",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("status", pa.string(), nullable=False),  # pass | fail | error | timeout | no_code
            pa.field("tests_passed", pa.int64()),
            pa.field("tests_total", pa.int64()),
            pa.field("duration_s", pa.float64()),
            pa.field("stderr_tail", pa.string()),
            pa.field("run_hash", pa.string(), nullable=False),  # code, tests and limits: an unchanged run is reused
        ]
    ),
)

# One row per (record, annotator, model); model identities are restored from the push receipt's blinding map.
ANNOTATIONS = ArtifactSchema(
    "annotations",
    pa.schema(
        [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("annotator", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("position", pa.int64(), nullable=False),  # 1 = shown as Response 1
            # of the text rated: tells a stale score from a current one
            pa.field("response_sha", pa.string(), nullable=False),
            pa.field("score", pa.int64()),  # null in a draft or discard without this rating
            pa.field("status", pa.string(), nullable=False),  # submitted | draft | discarded
            pa.field("to_correct", pa.string()),  # a model name, "combination" or "neither"
            pa.field("corrected_response", pa.string()),
            pa.field("comments", pa.string()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
            # why this response does not count (a value outside the dataset's settings, which is then left out);
            # null when it counts
            pa.field("problem", pa.string()),
            # annotation.preference: the model the annotator found better (the same on each row of the response), or
            # "tie"; null when not asked or not answered
            pa.field("preferred", pa.string()),
        ]
    ),
    added=("preferred",),
)


# analyze's decision: one score per (task, model), aggregated (analyze.aggregate) from the annotators' submitted scores
# of answers still current. export builds training data from these, so the metrics and the training data agree.
SCORES = ArtifactSchema(
    "scores",
    pa.schema(
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
            pa.field("n", pa.int64(), nullable=False),  # the annotators' scores behind it
        ]
    ),
)

# export's splits as the train stage reads them (export writes more columns): TRL's conversational formats, each row
# with the task it came from, so that a tuned model is never evaluated on a task it was trained on.
SFT_ROWS = ArtifactSchema(
    "SFT",
    pa.schema([pa.field("messages", pa.list_(MESSAGE), nullable=False), pa.field("task_id", pa.string(), False)]),
    open_ended=True,
)
DPO_ROWS = ArtifactSchema(
    "DPO",
    pa.schema(
        [
            pa.field("prompt", pa.list_(MESSAGE), nullable=False),
            pa.field("chosen", pa.list_(MESSAGE), nullable=False),
            pa.field("rejected", pa.list_(MESSAGE), nullable=False),
            pa.field("task_id", pa.string(), nullable=False),
        ]
    ),
    open_ended=True,
)


def text_sha(text: str) -> str:
    """A short fingerprint of a text, to match what annotators rated with what generate holds now."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, so the file cannot be written there (move it, or change the path)")
    _make_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `path`; it replaces `path` (and all it held) only if the block finishes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, so the folder cannot be written there (move it, or change the path)")
    _make_parent(path)
    staging = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(path, ignore_errors=True)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path}: cannot be written: a part of its folder is a file") from None


def read_previous(path: Path, artifact: ArtifactSchema) -> pa.Table | None:
    """A stage's own earlier output, reused as a cache: None when there is none, or it is from an older version."""
    try:
        return read_table(path, artifact) if Path(path).exists() else None
    except InputError:
        return None


def write_table(table: pa.Table, path: Path, artifact: ArtifactSchema) -> None:
    """Validate against the contract, then write parquet atomically."""
    table = artifact.validate(table, str(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_optional(path: Path, artifact: ArtifactSchema) -> pa.Table | None:
    """The artifact of an optional stage (judge, execute): None when the stage is switched off (no file, or none
    of its rows)."""
    if not Path(path).exists():
        return None
    table = read_table(path, artifact)
    return table if table.num_rows else None


def read_table(path: Path, artifact: ArtifactSchema) -> pa.Table:
    """Read a parquet artifact and check it against its contract."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (run the stage that writes the {artifact.name} artifact first)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None
    return artifact.validate(table, str(path))
