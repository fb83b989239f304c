"""Which tasks are export's test split: one stable draw per task, shared by SFT and DPO, so that a model tuned on the
train split can be compared on tasks it never saw (fetch.held_out) without export being run first."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa

from llm_feedback.errors import InputError


def in_test_split(task_id: str, seed: int, fraction: float) -> bool:
    """A stable draw per task: adding tasks later never moves an old one between train and test."""
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:8], "big") / 2**64
    return draw < fraction


@dataclass(frozen=True)
class HeldOut:
    table: pa.Table
    of: int  # tasks before the selection

    def line(self) -> str:
        return f"{self.table.num_rows} of {self.of} in export's test split (fetch.held_out)"


def held_out(tasks: pa.Table, *, seed: int, fraction: float) -> HeldOut:
    """Only the tasks export puts in its test split with this seed and fraction (export.seed, export.test_fraction)."""
    keep = [in_test_split(task, seed, fraction) for task in tasks.column("task_id").to_pylist()]
    table = tasks.filter(pa.array(keep, pa.bool_()))
    if tasks.num_rows and not table.num_rows:
        raise InputError(
            f"fetch.held_out: none of the {tasks.num_rows} tasks is in export's test split (export.test_fraction "
            f"{fraction}, export.seed {seed}); fetch more tasks, or raise export.test_fraction before training"
        )
    return HeldOut(table, tasks.num_rows)
