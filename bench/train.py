"""Benchmark: the train stage's training throughput (tokens/s) against a plain TRL script with the same settings, in
the same run.

Both train the same model on the same export (`--tasks` tasks, written by `llm_feedback.testing.training_data`) with
the same settings (`SETTINGS`, or `--precision`, `--steps`, `--method`): the stage as DVC runs it
(`python -m stages.train` in a project folder whose params.yaml holds them), and `plain_trl.py`, a script written
here the way TRL's documentation trains a LoRA adapter (`SFTTrainer` or `DPOTrainer`, `SFTConfig` or `DPOConfig`,
peft's `LoraConfig`), with nothing of this project. Each run is a fresh process, the two taking turns `--repeat`
times, so a change in the machine's load falls on both alike. Throughput is what the Trainer counts in both: tokens
trained on (not padding) over the time in its training loop (checkpoints included, every `save_steps` in both).

By default the model is a randomly initialised Llama built here (`--hidden` wide, `--layers` deep; no Hub) on the
CPU, where both runs use `--threads` threads (1 by default: on a shared machine, threads that wait for each other at
every operation turn any other load into stalls of seconds, which would measure the machine, not the code). On a GPU
machine, point `--model` at a real one and train in bf16:

    .venv/bin/python bench/train.py --model Qwen/Qwen2.5-Coder-0.5B-Instruct --precision bf16 --steps 100 --threads 0

Target: the stage adds at most 5% (its median tokens/s at least 0.95 of the script's); exit status 1 otherwise. It
writes nothing inside the repository. Run from the project root (about 2 minutes on 2 cores):

    .venv/bin/python bench/train.py [--repeat 3] [--tasks 64] [--steps 30] [--method sft|dpo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.figures
sys.dont_write_bytecode = True  # nothing written inside the repository, not even __pycache__

from bench.figures import Figure, exit_on_targets, print_figures  # noqa: E402
from llm_feedback.testing.tiny_models import build_model, build_tokenizer  # noqa: E402
from llm_feedback.testing.training_data import write_training_export  # noqa: E402

TARGET = 0.95  # the stage's tokens/s over the plain script's
# What both runs train with (params.yaml's train: keys); the plain script takes each by its TRL name.
SETTINGS = {
    "learning_rate": 0.0002,
    "batch_size": 4,
    "gradient_accumulation": 2,
    "max_length": 512,
    "seed": 0,
    "save_steps": 10,
    "logging_steps": 5,
    "beta": 0.1,
    "lora": {"rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
}

PLAIN_TRL = '''
"""SFT or DPO with a LoRA adapter, as TRL's documentation writes it; prints tokens/s as the Trainer counts them."""
import json, sys
import pandas as pd
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

model_id, data, method, steps, precision, out = sys.argv[1:7]
s = json.loads(sys.argv[7])
bf16, fp16 = precision == "bf16", precision == "fp16"
dtype = "bfloat16" if bf16 else "float16" if fp16 else "float32"
model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
tokenizer = AutoTokenizer.from_pretrained(model_id)
lora = s["lora"]
peft_config = LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                         target_modules=lora["target_modules"], task_type="CAUSAL_LM")
common = dict(output_dir=out, learning_rate=s["learning_rate"], max_steps=int(steps),
              per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=s["gradient_accumulation"],
              max_length=s["max_length"], seed=s["seed"], data_seed=s["seed"], bf16=bf16, fp16=fp16,
              activation_checkpointing=False, save_steps=s["save_steps"], save_total_limit=2,
              logging_steps=s["logging_steps"], include_num_input_tokens_seen="non_padding", report_to="none",
              disable_tqdm=True)
if method == "sft":
    rows = pd.read_parquet(f"{data}/sft/train.parquet", columns=["messages"])
    trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=Dataset.from_pandas(rows),
                         processing_class=tokenizer, peft_config=peft_config)
else:
    rows = pd.read_parquet(f"{data}/dpo/train.parquet", columns=["prompt", "chosen", "rejected"])
    trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=s["beta"]), train_dataset=Dataset.from_pandas(rows),
                         processing_class=tokenizer, peft_config=peft_config)
result = trainer.train()
state = trainer.state
print(json.dumps({"tokens": state.num_input_tokens_seen, "runtime_s": result.metrics["train_runtime"],
                  "steps": state.global_step}))
'''


def child_env(threads: int) -> dict[str, str]:
    """The same for both runs: no bytecode written, and `threads` CPU threads (0: torch's default)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def stage_run(folder: Path, *, model: str, method: str, steps: int, precision: str, threads: int) -> dict:
    """`python -m stages.train` in a project folder, from nothing (the earlier run's model would be reused)."""
    for leftover in ("models", "training", "data/cache"):
        subprocess.run(["rm", "-rf", str(folder / leftover)], check=True)
    params = {
        "models": {"base": {"backend": "transformers", "model": model}},
        "compare": ["base"],
        "train": {**SETTINGS, "enabled": True, "base": "base", "method": method, "max_steps": steps,
                  "precision": precision},
    }  # fmt: skip
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**child_env(threads), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.train"], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"the stage failed: {done.stderr.strip().splitlines()[-1]}")
    figures = json.loads((folder / "training/metrics.json").read_text())[method]
    assert figures["steps"] == steps, figures
    return {"tokens": figures["tokens"], "runtime_s": figures["runtime_s"]}


def plain_run(folder: Path, *, model: str, method: str, steps: int, precision: str, threads: int) -> dict:
    script = folder / "plain_trl.py"
    script.write_text(PLAIN_TRL)
    out = folder / "plain-output"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    args = [model, str(folder / "data/export"), method, str(steps), precision, str(out), json.dumps(SETTINGS)]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=folder,
        env=child_env(threads),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the plain TRL script failed: {done.stderr.strip().splitlines()[-1]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == steps, result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--model", help="a hub id or folder (default: a random Llama built here)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (0: torch's default)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        folder = Path(tmp)
        model = args.model or str(
            build_model(
                folder / "model",
                build_tokenizer(folder / "tokenizer"),
                hidden_size=args.hidden,
                layers=args.layers,
            )
        )
        write_training_export(folder / "data/export", train=args.tasks, test=0)
        runs = {"stage": [], "plain": []}
        settings = {
            "model": model,
            "method": args.method,
            "steps": args.steps,
            "precision": args.precision,
            "threads": args.threads,
        }
        for turn in range(args.repeat):
            for name, run in (("stage", stage_run), ("plain", plain_run))[:: 1 if turn % 2 == 0 else -1]:
                began = time.perf_counter()
                result = run(folder, **settings)
                result["process_s"] = time.perf_counter() - began
                runs[name].append(result)
                speed = result["tokens"] / result["runtime_s"]
                print(
                    f"{name:6} run {turn + 1}: {speed:,.0f} tokens/s ({result['tokens']:,} tokens in "
                    f"{result['runtime_s']:.2f} s; process {result['process_s']:.1f} s)",
                    flush=True,
                )

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] if key != "speed" else r["tokens"] / r["runtime_s"] for r in runs[name])

    stage, plain = median("stage", "speed"), median("plain", "speed")
    rows = [
        Figure(
            f"{args.method} tokens/s, stage (median of {args.repeat})",
            f"{stage:,.0f}",
            f">= {TARGET:.2f}x plain",
            f"plain TRL: {plain:,.0f}",
            stage >= TARGET * plain,
        ),
        Figure("stage over plain TRL", f"{stage / plain:.3f}x", f">= {TARGET:.2f}x", "1.000x", stage >= TARGET * plain),
        Figure(
            "process wall time (load, train, write)",
            f"{median('stage', 'process_s'):.1f} s",
            "-",
            f"plain TRL: {median('plain', 'process_s'):.1f} s",
            None,
        ),
    ]
    print()
    print_figures(rows, label_width=42, target_width=16, baseline_width=20)
    exit_on_targets(rows)


if __name__ == "__main__":
    main()
