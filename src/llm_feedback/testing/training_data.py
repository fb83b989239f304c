"""export's output for a handful of tasks small enough to memorise, for the train stage's tests and benchmark."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from llm_feedback.export import DPO_SCHEMA, SFT_SCHEMA, Exported, write_exports
from llm_feedback.training.record import TrainingRecord


def task_id(instruction: str) -> str:
    return hashlib.sha256(instruction.encode()).hexdigest()[:16]


def instruction(number: int) -> str:
    return f"Write a Python function add_{number} that returns the sum of a and b."


def answer(number: int) -> str:
    return f"def add_{number}(a, b):\n    return a + b\n"


def write_training_export(folder: Path, *, train: int = 4, test: int = 2, dpo: bool = True, sft: bool = True) -> Path:
    """export's folder with `train` tasks in the train split and `test` in the test split; each task has an SFT row
    (its answer) and a DPO pair (its answer over a refusal), unless `sft` or `dpo` is off."""
    splits = {"train": range(train), "test": range(train, train + test)}
    sft_rows = {split: [_sft(n) for n in numbers] if sft else [] for split, numbers in splits.items()}
    dpo_rows = {split: [_dpo(n) for n in numbers] if dpo else [] for split, numbers in splits.items()}
    write_exports(
        Exported(
            sft={split: pa.Table.from_pylist(rows, schema=SFT_SCHEMA) for split, rows in sft_rows.items()},
            dpo={split: pa.Table.from_pylist(rows, schema=DPO_SCHEMA) for split, rows in dpo_rows.items()},
        ),
        folder,
    )
    return folder


def _sft(number: int) -> dict:
    return {
        "messages": [
            {"role": "user", "content": instruction(number)},
            {"role": "assistant", "content": answer(number)},
        ],
        "task_id": task_id(instruction(number)),
        "source": "model",
        "model": "a",
        "score": 7.0,
    }


def _dpo(number: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": instruction(number)}],
        "chosen": [{"role": "assistant", "content": answer(number)}],
        "rejected": [{"role": "assistant", "content": "I cannot help with that."}],
        "task_id": task_id(instruction(number)),
        "chosen_model": "a",
        "rejected_model": "b",
        "score_chosen": 7.0,
        "score_rejected": 0.0,
    }


def write_training_record(
    folder: Path, *, trained_on: Sequence[str] = (), merged: bool = False, weights_sha: str = ""
) -> TrainingRecord:
    """A record as the train stage writes it beside the tuned model `tuned` of base `base` (org/base): what analyze's
    leakage check and the evaluate stage read of a trained model."""
    record = TrainingRecord(
        fingerprint="f",
        name="tuned",
        base="base",
        base_model="org/base",
        method="sft",
        tuning="lora",
        merged=merged,
        task_ids=sorted(trained_on),
        trainable_parameters=1,
        phases=[],
        weights_sha=weights_sha,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training.json").write_text(record.to_json())
    return record
