"""train: params.yaml -> TRL's configs and peft's LoRA config, in one place, so the stage and its benchmark's plain
TRL script can be held to the same settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_feedback.params import TrainParams

# Checkpoints kept while a run goes on: the newest may be cut short by a kill, so the one before it stays.
CHECKPOINTS_KEPT = 2


def resolved_precision(precision: str) -> str:
    """auto: bf16 on a GPU that has it (Ampere and later), else fp32 (fp16 needs a choice: it can overflow)."""
    if precision != "auto":
        return precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def weights_dtype(precision: str, *, tuning: str) -> Any:
    """The dtype the weights load in: bf16 as they train; fp16 only under a LoRA adapter, since full tuning in fp16
    needs fp32 master weights for its gradient scaler."""
    import torch

    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16" and tuning == "lora":
        return torch.float16
    return torch.float32


def lora_config(params: TrainParams) -> Any:
    from peft import LoraConfig

    lora = params.lora
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def trainer_arguments(
    params: TrainParams, *, output_dir: Path, precision: str, cpu: bool, pin_memory: bool, bars: bool
) -> dict:
    """The TrainingArguments both phases share: every figure params.yaml sets, and checkpoints to resume from."""
    return {
        "output_dir": str(output_dir),
        "learning_rate": params.learning_rate,
        "num_train_epochs": params.epochs,
        "max_steps": params.max_steps or -1,
        "per_device_train_batch_size": params.batch_size,
        "gradient_accumulation_steps": params.gradient_accumulation,
        "max_length": params.max_length,
        "seed": params.seed,
        "data_seed": params.seed,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "activation_checkpointing": params.gradient_checkpointing,  # transformers' new name for it
        "save_strategy": "steps",
        "save_steps": params.save_steps,
        "save_total_limit": CHECKPOINTS_KEPT,
        "logging_strategy": "steps",
        "logging_steps": params.logging_steps,
        "include_num_input_tokens_seen": "non_padding",
        "report_to": "none",
        "disable_tqdm": not bars,
        "use_cpu": cpu,
        "dataloader_pin_memory": pin_memory,
    }


def sft_config(params: TrainParams, **arguments: Any) -> Any:
    from trl import SFTConfig

    return SFTConfig(**trainer_arguments(params, **arguments))


def dpo_config(params: TrainParams, **arguments: Any) -> Any:
    from trl import DPOConfig

    return DPOConfig(**trainer_arguments(params, **arguments), beta=params.beta)
