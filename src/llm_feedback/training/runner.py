"""The training itself: TRL's SFTTrainer and DPOTrainer, one phase after another, each resuming from its last
checkpoint, and the result written to the output folder in one piece.

A phase followed by another keeps its result under <run>/<phase>/final with a record of its figures, so a run killed
in DPO does not repeat SFT. After SFT, DPO trains the SFT adapter further against a frozen copy of it (TRL's "ref"
adapter), so the reference is the SFT model and not the base.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from llm_feedback.artifacts import atomic_folder
from llm_feedback.errors import ConfigError
from llm_feedback.params import ModelSpec, TrainParams
from llm_feedback.secrets import scrub
from llm_feedback.training.checkpoints import DONE_FILE, finished_phase, last_checkpoint
from llm_feedback.training.data import DPO_COLUMNS, SFT_COLUMNS, TrainingData, trainer_rows
from llm_feedback.training.progress import Progress, loss_curve
from llm_feedback.training.record import RECORD_FILE, Phase, TrainingRecord, weights_sha
from llm_feedback.training.settings import dpo_config, lora_config, resolved_precision, sft_config, weights_dtype

PHASES = {"sft": ("sft",), "dpo": ("dpo",), "sft_then_dpo": ("sft", "dpo")}
FINAL = "final"
ADAPTER = "default"  # peft's name for the adapter being trained; TRL's frozen copy for DPO is "ref"


def run_training(
    *,
    params: TrainParams,
    base_name: str,
    base: ModelSpec,
    tokenizer: Any,
    data: TrainingData,
    run: Path,
    output: Path,
    fingerprint: str,
) -> TrainingRecord:
    """Every phase of `params.method` in `run` (resuming where a killed run stopped), then the result to `output`."""
    bars = sys.stderr.isatty()
    _quiet_libraries(bars=bars)
    precision = resolved_precision(params.precision)
    cpu, gpu = base.device == "cpu", _has_gpu()
    loader = _Loader(base_name=base_name, base=base, dtype=weights_dtype(precision, tuning=params.tuning))
    kinds = PHASES[params.method]
    phases: list[Phase] = []
    start: Path | None = None  # a finished earlier phase's result, which the next one trains further
    for number, kind in enumerate(kinds, 1):
        folder = Path(run) / kind
        last = number == len(kinds)
        done = None if last else finished_phase(folder)
        if done is not None:
            phases.append(Phase(**{**done, "loss": [tuple(point) for point in done["loss"]]}))
            start = folder / FINAL
            continue
        progress = Progress(phase=kind, every_s=params.progress_every_s, lines=not bars)
        arguments = {
            "output_dir": folder,
            "precision": precision,
            "cpu": cpu,
            "pin_memory": not cpu and gpu,
            "bars": bars,
        }
        trainer = _trainer(
            kind,
            params=params,
            loader=loader,
            start=start,
            tokenizer=tokenizer,
            data=data,
            arguments=arguments,
            progress=progress,
        )
        resume = last_checkpoint(folder)
        metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
        phase = Phase(
            kind=kind,
            rows=(data.sft if kind == "sft" else data.dpo).num_rows,
            steps=trainer.state.global_step,
            epochs=float(trainer.state.epoch or 0.0),
            resumed_at=progress.resumed_at,
            steps_run=progress.steps_run,
            tokens=int(trainer.state.num_input_tokens_seen - progress.tokens_at_start),
            runtime_s=float(metrics.get("train_runtime", 0.0)),
            loss=loss_curve(trainer.state.log_history),
        )
        phases.append(phase)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if not last:
            start = folder / FINAL
            _save_phase(model, start, phase=phase)
    record = TrainingRecord(
        fingerprint=fingerprint,
        name=params.name,
        base=base_name,
        base_model=str(base.model),
        method=params.method,
        tuning=params.tuning,
        merged=params.merge,
        task_ids=data.task_ids,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        phases=phases,
    )
    return _write_output(model, output, params=params, tokenizer=tokenizer, record=record)


class _Loader:
    """Loads the base model, or an earlier phase's result, in the training dtype; one line when the base cannot."""

    def __init__(self, *, base_name: str, base: ModelSpec, dtype: Any) -> None:
        self.base_name, self.base, self.dtype = base_name, base, dtype

    def model(self, source: Path | None = None) -> Any:
        from transformers import AutoModelForCausalLM

        where = str(source or self.base.model)
        try:
            return AutoModelForCausalLM.from_pretrained(where, dtype=self.dtype)
        except Exception as e:  # noqa: BLE001 (whatever transformers raises, one line naming the model)
            lines = scrub(str(e)).splitlines()
            reason = (lines[0] if lines else type(e).__name__)[:200]
            raise ConfigError(f"params.yaml: models.{self.base_name}: cannot load '{where}' ({reason})") from None

    def adapted(self, adapter: Path) -> Any:
        """The base with an earlier phase's adapter, trainable."""
        from peft import PeftModel

        return PeftModel.from_pretrained(self.model(), str(adapter), is_trainable=True)


def _trainer(
    kind: str,
    *,
    params: TrainParams,
    loader: _Loader,
    start: Path | None,
    tokenizer: Any,
    data: TrainingData,
    arguments: dict,
    progress: Progress,
) -> Any:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer, SFTTrainer

    lora = params.tuning == "lora"
    if kind == "sft":
        trainer = SFTTrainer(
            model=loader.model(),
            args=sft_config(params, **arguments),
            train_dataset=Dataset.from_list(trainer_rows(data.sft, SFT_COLUMNS)),
            processing_class=tokenizer,
            peft_config=lora_config(params) if lora else None,
            callbacks=[progress],
        )
    else:
        if lora:  # a fresh adapter on the base, or the SFT adapter trained further (TRL freezes a copy as reference)
            model, reference, peft = (
                (loader.adapted(start), None, None) if start else (loader.model(), None, lora_config(params))
            )
        else:  # the reference is the model DPO starts from, frozen
            model, reference, peft = loader.model(start), loader.model(start), None
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=dpo_config(params, **arguments),
            train_dataset=Dataset.from_list(trainer_rows(data.dpo, DPO_COLUMNS)),
            processing_class=tokenizer,
            peft_config=peft,
            callbacks=[progress],
        )
    if arguments["bars"] is False:
        trainer.remove_callback(PrinterCallback)  # its dict per log would drown the progress lines
    return trainer


def _save_phase(model: Any, folder: Path, *, phase: Phase) -> None:
    """An earlier phase's result and figures, for the next phase and for a rerun after a kill."""
    with atomic_folder(folder) as staging:
        _save_weights(model, staging, merge=False)
        (staging / DONE_FILE).write_text(json.dumps(asdict(phase)), encoding="utf-8")


def _write_output(
    model: Any, output: Path, *, params: TrainParams, tokenizer: Any, record: TrainingRecord
) -> TrainingRecord:
    """The adapter (or the merged or fully tuned model), its tokenizer and its record, replacing `output` at once."""
    with atomic_folder(output) as staging:
        _save_weights(model, staging, merge=params.merge)
        tokenizer.save_pretrained(staging)
        record = replace(record, weights_sha=weights_sha(staging))
        (staging / RECORD_FILE).write_text(record.to_json(), encoding="utf-8")
    return record


def _save_weights(model: Any, folder: Path, *, merge: bool) -> None:
    """Only the trained adapter (not TRL's frozen reference copy), or the whole model with it merged in."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if merge:
            model.merge_and_unload(adapter_names=[ADAPTER]).save_pretrained(folder)
        else:
            model.save_pretrained(folder, selected_adapters=[ADAPTER])
    else:
        model.save_pretrained(folder)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _quiet_libraries(*, bars: bool) -> None:
    """In logs, the stage's own progress lines only: no per-file bars, no advice meant for library developers."""
    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)  # renamed arguments inside transformers and TRL
    transformers.logging.set_verbosity_error()
    if not bars:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
