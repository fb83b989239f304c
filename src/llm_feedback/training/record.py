"""What a training run leaves beside the model it wrote (training.json), and the views DVC reads of it: the metrics
file and the loss curve. The record names every task trained on, so a tuned model is never evaluated on one."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llm_feedback.adapters import RECORD_FILE
from llm_feedback.artifacts import atomic_folder, atomic_path
from llm_feedback.params import ModelSpec, TrainParams

# Settings that change how a run goes, not what it learns: a change in one of them reuses the trained model.
NOT_LEARNED = {"enabled", "name", "push_to_hub", "private", "progress_every_s", "save_steps", "gradient_checkpointing"}
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class Phase:
    """One trainer's run (sft or dpo): its size, where it resumed, and its loss curve."""

    kind: str
    rows: int
    steps: int
    epochs: float
    resumed_at: int  # the checkpoint's step this process started from (0: from the start)
    steps_run: int  # optimizer steps this process ran: steps - resumed_at when none was repeated
    tokens: int  # tokens trained on (not padding), this process
    runtime_s: float  # this process's time in the training loop
    loss: list[tuple[int, float]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.runtime_s if self.runtime_s > 0 else None

    def figures(self) -> dict:
        losses = [loss for _, loss in self.loss]
        return {
            "rows": self.rows,
            "steps": self.steps,
            "epochs": round(self.epochs, 4),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "resumed_at_step": self.resumed_at,
            "steps_run": self.steps_run,
            "tokens": self.tokens,
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
            "runtime_s": round(self.runtime_s, 3),
        }

    def line(self) -> str:
        losses = [loss for _, loss in self.loss]
        loss = f", loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else ""
        resumed = f" (resumed at step {self.resumed_at}, ran {self.steps_run})" if self.resumed_at else ""
        speed = "" if self.tokens_per_s is None else f", {self.tokens_per_s:,.0f} tokens/s"
        return f"{self.kind} {self.steps} steps on {self.rows} rows{resumed}{loss}{speed}"


@dataclass(frozen=True)
class TrainingRecord:
    fingerprint: str
    name: str
    base: str  # its name under models:
    base_model: str  # what that name loads
    method: str
    tuning: str
    merged: bool
    task_ids: list[str]
    trainable_parameters: int
    phases: list[Phase]
    weights_sha: str = ""  # of the weight files written: what the tuned model's answers are cached under

    def metrics(self) -> dict:
        return {
            "trained": True,
            "name": self.name,
            "base": self.base,
            "method": self.method,
            "tuning": self.tuning,
            "tasks": len(self.task_ids),
            "trainable_parameters": self.trainable_parameters,
            **{phase.kind: phase.figures() for phase in self.phases},
        }

    def to_json(self) -> str:
        return json.dumps({"trained": True, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: dict) -> TrainingRecord:
        data = {key: value for key, value in data.items() if key != "trained"}
        phases = [Phase(**{**p, "loss": [tuple(point) for point in p["loss"]]}) for p in data.pop("phases")]
        return cls(**data, phases=phases)


def run_fingerprint(*, params: TrainParams, base: ModelSpec, data_sha: str, code: list[Path]) -> str:
    """What the trained weights follow from: the settings that shape learning, the base model, the data and the code
    that trains. The same fingerprint reuses the model already written; another one starts a fresh run."""
    digest = hashlib.sha256()
    settings = params.model_dump(mode="json", exclude=NOT_LEARNED)
    digest.update(json.dumps([settings, base.model, base.tokenizer, data_sha], sort_keys=True).encode())
    for path in sorted(code):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def read_record(folder: Path) -> TrainingRecord | None:
    """The record of the model in `folder`; None when there is none, or none of a finished training."""
    try:
        data = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
        return TrainingRecord.from_json(data) if data.get("trained") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def weights_sha(folder: Path) -> str:
    """Of every weight file in `folder`, by name: a retrained model gets another, so its answers are asked again."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def write_untrained(folder: Path) -> None:
    """With train off, a folder holding only a record that says so: DVC expects the output, and a model naming it as
    its adapter fails with that reason."""
    with atomic_folder(folder) as staging:
        (staging / RECORD_FILE).write_text(json.dumps({"trained": False, "reason": "train.enabled is false"}) + "\n")


def write_metrics(record: TrainingRecord | None, path: Path) -> None:
    """The figures `dvc metrics show` and `dvc exp show` list; {"trained": false} when train is off."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record.metrics() if record else {"trained": False}, indent=2) + "\n")


def write_loss_curve(record: TrainingRecord | None, path: Path) -> None:
    """One row per logged step, steps counted on across phases (dpo's continue after sft's), for `dvc plots`."""
    rows, offset = [], 0
    for phase in record.phases if record else []:
        rows.extend([phase.kind, offset + step, loss] for step, loss in phase.loss)
        offset += phase.steps
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phase", "step", "loss"])
        writer.writerows(rows)
