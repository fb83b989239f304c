"""The train stage: export's train split -> a model tuned from a declared base with TRL (SFT, DPO, or SFT then DPO),
LoRA through peft unless `train.tuning: full`, written to <paths.models>/<train.name>/ with a record of what it was
trained on.

Everything that can be wrong with the input (no rows, no pairs, a base that is not declared, a tokenizer without a
chat template) is found before anything is loaded or written. A run with the same settings, base, data and code as
the model already written reuses it: DVC reruns the stage when any model entry changes (the base is one of them),
and declaring the tuned model must not train it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_feedback.params import ModelSpec, TrainParams
from llm_feedback.prompts import load_tokenizer
from llm_feedback.training.checkpoints import discard, run_folder
from llm_feedback.training.data import load_training_data
from llm_feedback.training.record import TrainingRecord, read_record, run_fingerprint, write_untrained

# The code a trained model follows from, besides the settings and data: a change in it trains again.
CODE = [Path(__file__), *sorted((Path(__file__).parent / "training").glob("*.py"))]


@dataclass(frozen=True)
class Trained:
    output: Path
    record: TrainingRecord | None  # None: train.enabled is false
    reused: bool = False

    def line(self) -> str:
        if self.record is None:
            return f"disabled (train.enabled: false) -> {self.output} (no model)"
        record = self.record
        what = f"{record.method} of {record.base} ({record.tuning}{', merged' if record.merged else ''})"
        if self.reused:
            return f"{what} already trained on these settings and data -> {self.output} (reused)"
        phases = "; ".join(phase.line() for phase in record.phases)
        return f"{what} on {len(record.task_ids)} tasks: {phases} -> {self.output}"


def train(
    *, params: TrainParams, models: dict[str, ModelSpec], export: Path, models_folder: Path, checkpoints: Path
) -> Trained:
    """Train (or reuse) the model `params` describe; its checkpoints live under `checkpoints` until it is written."""
    output = Path(models_folder) / params.name
    if not params.enabled:
        write_untrained(output)
        return Trained(output, None)
    assert params.base is not None  # Params checks it when train is enabled
    base = models[params.base]
    data = load_training_data(export=export, method=params.method)
    tokenizer = load_tokenizer(params.base, base)
    fingerprint = run_fingerprint(params=params, base=base, data_sha=data.sha, code=CODE)
    previous = read_record(output)
    if previous is not None and previous.fingerprint == fingerprint:
        return Trained(output, previous, reused=True)

    from llm_feedback.training.runner import run_training  # torch, transformers, trl and peft load only to train

    run = run_folder(checkpoints, name=params.name, fingerprint=fingerprint)
    record = run_training(
        params=params,
        base_name=params.base,
        base=base,
        tokenizer=tokenizer,
        data=data,
        run=run,
        output=output,
        fingerprint=fingerprint,
    )
    discard(run)
    return Trained(output, record)
