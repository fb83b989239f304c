"""No tuned model compared on tasks it was trained on: it would be graded on answers it had learnt, and look better
than it is. The train stage records every task it trained on beside the weights (training.json); analyze refuses a
comparison where a compared model answered one of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from llm_feedback.adapters import read_record
from llm_feedback.errors import ConfigError
from llm_feedback.params import ModelSpec

SHOWN = 5  # task ids named in the error; the count says how many there are


def trained_tasks(spec: ModelSpec) -> set[str]:
    """The tasks the train stage recorded for this model's adapter or weights; empty for any other model."""
    if spec.backend != "transformers":
        return set()  # a served adapter is a name: its record is on the server's machine
    for location in (spec.adapter, spec.model):
        record = read_record(Path(location)) if location and Path(location).is_dir() else None
        if record and record.get("trained"):
            return set(record.get("task_ids") or [])
    return set()


def refuse_trained_tasks(*, compare: Sequence[str], models: Mapping[str, ModelSpec], generations: pa.Table) -> None:
    """One line naming the first compared model that answered tasks it was trained on, and those tasks."""
    answered: dict[str, set[str]] = {}
    for task, model in zip(generations.column("task_id").to_pylist(), generations.column("model").to_pylist()):
        answered.setdefault(model, set()).add(task)
    for name in compare:
        seen = sorted(trained_tasks(models[name]) & answered.get(name, set()))
        if seen:
            more = f" and {len(seen) - SHOWN} more" if len(seen) > SHOWN else ""
            raise ConfigError(
                f"compare: {name} was trained on {len(seen)} of the tasks it is compared on ({', '.join(seen[:SHOWN])}"
                f"{more}): compare it only on tasks it did not see (fetch.held_out: true keeps export's test split)"
            )
