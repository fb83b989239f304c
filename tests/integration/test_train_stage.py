"""The train stage on a tiny model built here (no Hub): the loss falls on a set it can memorise, the adapter loads
through generate and changes the answers, a SIGKILLed run resumes from its checkpoint without repeating a step, and
bad input stops it with one line before anything is written."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.params import Params
from llm_feedback.prompts import build_prompts
from llm_feedback.testing.tiny_models import build_model, build_tokenizer
from llm_feedback.testing.training_data import instruction, task_id, write_training_export
from llm_feedback.train import Trained, train
from tests.project import copy_project, edit_params, make_project, run, run_stage, start_stage

# Few steps at a high rate: enough for a two-layer model to move on four examples.
FAST = {
    "enabled": True,
    "base": "base",
    "max_steps": 8,
    "learning_rate": 0.01,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "logging_steps": 1,
    "save_steps": 4,
    "lora": {"rank": 8, "alpha": 16},
}
TRAIN_TASKS, TEST_TASKS = 4, 2


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    return build_model(tmp_path_factory.mktemp("base") / "model", tiny_tokenizer, hidden_size=128)


def params(base_model: Path, **train: object) -> dict:
    return {
        "models": {"base": {"backend": "transformers", "model": str(base_model), "device": "cpu"}},
        "compare": ["base"],
        "train": {**FAST, **train},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_model: Path) -> Trained:
    """SFT on the four train tasks, in this process, as the stage calls it."""
    folder = tmp_path_factory.mktemp("trained")
    loaded = Params.model_validate(params(base_model))
    return train(
        params=loaded.train,
        models=loaded.models,
        export=write_training_export(folder / "export", train=TRAIN_TASKS, test=TEST_TASKS),
        models_folder=folder / "models",
        checkpoints=folder / "checkpoints",
    )


def test_the_loss_falls_on_a_set_small_enough_to_memorise(trained: Trained) -> None:
    record = trained.record
    assert record is not None and not trained.reused
    [phase] = record.phases
    steps, losses = zip(*phase.loss)
    assert steps == tuple(range(1, 9))  # a point per step, at least 5
    assert losses[-1] < losses[0] - 0.5
    assert sum(losses[4:]) / 4 < sum(losses[:4]) / 4  # falling, not one lucky step
    assert record.task_ids == sorted(task_id(instruction(n)) for n in range(TRAIN_TASKS))
    assert {p.name for p in trained.output.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    assert not (trained.output.parent.parent / "checkpoints" / "tuned").exists(), "checkpoints go once it is written"


def test_the_adapter_loads_through_generate_and_changes_the_answers(
    tmp_path: Path, base_model: Path, trained: Trained
) -> None:
    tasks = pa.table(
        {
            "task_id": [task_id(instruction(n)) for n in range(TRAIN_TASKS, TRAIN_TASKS + TEST_TASKS)],
            "instruction": [instruction(n) for n in range(TRAIN_TASKS, TRAIN_TASKS + TEST_TASKS)],
            "source": ["file"] * TEST_TASKS,
            "source_row": list(range(TEST_TASKS)),
        }
    )
    spec = {"backend": "transformers", "model": str(base_model), "device": "cpu"}
    raw = {
        "models": {"base": spec, "tuned": {**spec, "adapter": str(trained.output)}},
        "compare": ["base", "tuned"],
        "generation": {"max_new_tokens": 12},
    }
    loaded = Params.model_validate(raw)
    prompts = build_prompts(tasks, models=loaded.models, compare=loaded.compare, params=loaded.format).prompts
    folder = make_project(tmp_path, params=raw, inputs={"tasks": tasks, "prompts": prompts})
    result = run_stage("generate", folder, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(folder / "data/generations.parquet").to_pylist()
    answers = {(r["task_id"], r["model"]): r["response"] for r in rows}
    assert all(r["error"] is None for r in rows)
    assert any(answers[t, "base"] != answers[t, "tuned"] for t in tasks.column("task_id").to_pylist())
    hashes = {r["model"]: r["request_hash"] for r in rows}
    assert hashes["base"] != hashes["tuned"], "the tuned model's answers are cached apart from the base's"


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint_and_repeats_no_step(tmp_path: Path, base_model: Path) -> None:
    steps = 30
    folder = make_project(tmp_path, params=params(base_model, max_steps=steps, save_steps=2))
    write_training_export(folder / "data/export", train=TRAIN_TASKS, test=TEST_TASKS)
    process = start_stage("train", folder)
    deadline = time.monotonic() + 120
    while not list((folder / "data/cache/train/tuned").glob("*/sft/checkpoint-6/trainer_state.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its third checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "models").exists() and not (folder / "training").exists(), "nothing written before the end"
    states = (folder / "data/cache/train/tuned").glob("*/sft/checkpoint-*/trainer_state.json")
    saved = max(json.loads(state.read_text())["global_step"] for state in states)
    assert 6 <= saved < steps

    resumed = run_stage("train", folder, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(resumed at step {saved}, ran {steps - saved})" in resumed.stdout
    figures = json.loads((folder / "training/metrics.json").read_text())["sft"]
    assert (figures["steps"], figures["resumed_at_step"], figures["steps_run"]) == (steps, saved, steps - saved)
    with (folder / "training/loss.csv").open() as f:
        logged = [int(row["step"]) for row in csv.DictReader(f)]
    assert logged == list(range(1, steps + 1)), "each step once: those before the checkpoint kept, none repeated"
    assert not (folder / "data/cache/train/tuned").exists()


def _tokenizer_without_template(folder: Path, base_model: Path) -> dict:
    spec = {"backend": "transformers", "model": str(base_model), "tokenizer": str(folder / "plain")}
    build_tokenizer(folder / "plain", chat_template=None)
    return {"models": {"base": spec}}


@pytest.mark.parametrize(
    ("case", "code", "error"),
    [
        (
            "no SFT rows",
            1,
            "data/export/sft/train.parquet: export's train split has no SFT rows, and train.method: sft needs them "
            "(annotate more tasks, write corrections, or lower export.sft_min_score)",
        ),
        (
            "no DPO pairs",
            1,
            "data/export/dpo/train.parquet: export's train split has no DPO pairs, and train.method: dpo needs them "
            "(annotate more tasks, or lower export.dpo_min_margin)",
        ),
        ("base not declared", 2, "params.yaml: train.base: 'llama' is not declared under models: (declared: base)"),
        ("no chat template", 2, "params.yaml: models.base: tokenizer '{plain}' has no chat template; "),
    ],
)
def test_bad_input_stops_with_one_line_and_writes_nothing(
    tmp_path: Path, base_model: Path, case: str, code: int, error: str
) -> None:
    raw = params(base_model)
    if case == "no DPO pairs":
        raw["train"]["method"] = "dpo"
    if case == "base not declared":
        raw["train"]["base"] = "llama"
    if case == "no chat template":
        raw.update(_tokenizer_without_template(tmp_path / "tokenizer", base_model))
    folder = make_project(tmp_path / "project", params=raw)
    write_training_export(folder / "data/export", dpo=case != "no DPO pairs", sft=case != "no SFT rows")
    before = sorted(p for p in folder.rglob("*"))
    result = run_stage("train", folder, timeout=300)
    assert result.returncode == code
    [line] = result.stderr.splitlines()
    assert line.startswith(f"train: error: {error.format(plain=tmp_path / 'tokenizer/plain')}")
    assert sorted(p for p in folder.rglob("*")) == before


@pytest.mark.slow
def test_dvc_repro_trains_once_and_declaring_the_tuned_model_reuses_it(tmp_path: Path, base_model: Path) -> None:
    """The shipped dvc.yaml and params.yaml with training on: `dvc repro` writes the adapter as a DVC output with its
    metrics and loss curve; declaring the tuned model (which changes `models:`) reruns the stage, which reuses it."""
    repo = copy_project(tmp_path / "project")

    def train_the_tiny_model(raw: dict) -> None:
        tiny = params(base_model)
        raw.update(models=tiny["models"], compare=tiny["compare"])
        raw["train"].update(tiny["train"])

    edit_params(repo, train_the_tiny_model)
    write_training_export(repo / "data/export", train=TRAIN_TASKS, test=TEST_TASKS)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)

    first = run(["dvc", "repro", "--single-item", "train"], repo)
    assert "train: sft of base (lora) on 4 tasks: sft 8 steps on 4 rows" in first.stdout
    adapter = (repo / "models/tuned/adapter_model.safetensors").read_bytes()
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    figures = metrics[""]["data"]["training/metrics.json"]["data"]
    assert (figures["trained"], figures["method"], figures["sft"]["steps"]) == (True, "sft", 8)
    assert "models/tuned" in (repo / "dvc.lock").read_text()

    edit_params(
        repo,
        lambda raw: raw["models"].update(tuned={**raw["models"]["base"], "adapter": "models/tuned"}),
    )
    second = run(["dvc", "repro", "--single-item", "train"], repo)
    assert "train: sft of base (lora) already trained on these settings and data -> models/tuned (reused)" in (
        second.stdout
    )
    assert (repo / "models/tuned/adapter_model.safetensors").read_bytes() == adapter
    assert "up to date" in run(["dvc", "repro", "--single-item", "train"], repo).stdout


@pytest.mark.slow
def test_sft_then_dpo_killed_in_dpo_resumes_there_and_keeps_its_sft(
    tmp_path: Path, base_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_feedback.training.progress import Progress

    loaded = Params.model_validate(params(base_model, method="sft_then_dpo", max_steps=4, save_steps=2))
    where = {
        "params": loaded.train,
        "models": loaded.models,
        "export": write_training_export(tmp_path / "export", train=TRAIN_TASKS, test=TEST_TASKS),
        "models_folder": tmp_path / "models",
        "checkpoints": tmp_path / "checkpoints",
    }
    counted = Progress.on_step_end

    def killed_at_dpo_step_3(self: Progress, args: object, state: object, control: object, **kwargs: object) -> None:
        counted(self, args, state, control, **kwargs)
        if self.phase == "dpo" and state.global_step == 3:
            raise KeyboardInterrupt  # what a kill leaves: checkpoints and the finished SFT, no output

    monkeypatch.setattr(Progress, "on_step_end", killed_at_dpo_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(**where)
    assert not (tmp_path / "models").exists()
    rerun: list[str] = []

    def counting(self: Progress, args: object, state: object, control: object, **kwargs: object) -> None:
        counted(self, args, state, control, **kwargs)
        rerun.append(self.phase)

    monkeypatch.setattr(Progress, "on_step_end", counting)
    record = train(**where).record
    assert record is not None
    assert rerun == ["dpo", "dpo"], "no SFT step again, and DPO from its checkpoint at step 2"
    sft, dpo = record.phases
    assert (sft.kind, sft.steps, sft.resumed_at, sft.steps_run) == ("sft", 4, 0, 4)  # the first run's figures, kept
    assert (dpo.kind, dpo.steps, dpo.resumed_at, dpo.steps_run) == ("dpo", 4, 2, 2)
    assert [step for step, _ in dpo.loss] == [1, 2, 3, 4]
    config = json.loads((tmp_path / "models/tuned/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_model)
    assert not (tmp_path / "models/tuned/ref").exists(), "only the trained adapter, not DPO's frozen reference"
