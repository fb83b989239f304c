"""What the train stage trains on: export's train split, checked before anything loads or is written."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from llm_feedback.artifacts import DPO_ROWS, SFT_ROWS, ArtifactSchema, read_table
from llm_feedback.errors import InputError

# The columns TRL's trainers read; export's other columns (task_id, models, scores) stay out of the trainer.
SFT_COLUMNS = ("messages",)
DPO_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class TrainingData:
    """The rows each phase trains on (None: the method has no such phase), and what identifies them."""

    sft: pa.Table | None
    dpo: pa.Table | None
    sha: str  # of the files read: the same bytes, the same training

    @property
    def task_ids(self) -> list[str]:
        """Every task the tuned model saw, so that it is never evaluated on one of them."""
        tables = [t for t in (self.sft, self.dpo) if t is not None]
        return sorted({task for t in tables for task in t.column("task_id").to_pylist()})


def load_training_data(*, export: Path, method: str) -> TrainingData:
    """export's train split for `method`; an empty split is an error that says which export setting to loosen."""
    export = Path(export)
    if not (export / "README.md").is_file():
        raise InputError(f"{export}: not found (run the export stage first)")
    files, sft, dpo = [], None, None
    if method in ("sft", "sft_then_dpo"):
        files.append(path := export / "sft" / "train.parquet")
        sft = _split(
            path,
            SFT_ROWS,
            f"export's train split has no SFT rows, and train.method: {method} needs them (annotate more tasks, "
            "write corrections, or lower export.sft_min_score)",
        )
    if method in ("dpo", "sft_then_dpo"):
        files.append(path := export / "dpo" / "train.parquet")
        dpo = _split(
            path,
            DPO_ROWS,
            f"export's train split has no DPO pairs, and train.method: {method} needs them (annotate more tasks, "
            "or lower export.dpo_min_margin)",
        )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return TrainingData(sft=sft, dpo=dpo, sha=digest.hexdigest()[:16])


def _split(path: Path, artifact: ArtifactSchema, empty: str) -> pa.Table:
    """export writes no file for a split without rows, so a missing file is an empty split."""
    table = read_table(path, artifact) if path.is_file() else None
    if table is None or not table.num_rows:
        raise InputError(f"{path}: {empty}")
    return table


def trainer_rows(table: pa.Table, columns: tuple[str, ...]) -> list[dict]:
    """Only what the trainer reads: TRL would try to tokenize or collate any other column."""
    return table.select(list(columns)).to_pylist()
