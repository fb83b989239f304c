"""The train stage's parts that need no model: its params, checkpoints, record, and how a tuned model's answers are
told apart from its base's in the request cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from llm_feedback.adapters import tuned_identity, with_adapter
from llm_feedback.errors import ConfigError
from llm_feedback.params import ModelSpec, Params, TrainParams, describe_validation_error
from llm_feedback.training.checkpoints import discard, last_checkpoint, run_folder
from llm_feedback.training.record import (
    Phase,
    TrainingRecord,
    read_record,
    run_fingerprint,
    write_loss_curve,
    write_untrained,
)

LOCAL = {"backend": "transformers", "model": "org/base"}


def load(train: dict, **models: dict) -> Params:
    return Params.model_validate({"models": {"base": LOCAL, **models}, "compare": ["base"], "train": train})


@pytest.mark.parametrize(
    ("train", "models", "error"),
    [
        ({"enabled": True, "base": "api"}, {"api": {"backend": "hf", "model": "m"}}, "train.base: 'api' has backend"),
        ({"enabled": True, "base": "base", "name": "base"}, {}, "train.name: 'base' is the base's name"),
        ({"merge": True, "tuning": "full"}, {}, "train: merge: a fully tuned model has no adapter to merge"),
        ({"learning_rate": "2e-4"}, {}, "train.learning_rate: YAML reads 2e-4 as text: write 0.0002"),
        ({"method": "ppo"}, {}, "train.method: Input should be 'sft', 'dpo' or 'sft_then_dpo'"),
        ({}, {"x": {"backend": "hf", "model": "m", "adapter": "a"}}, "models.x: adapter is for backend"),
    ],
)
def test_bad_train_params_name_the_key(train: dict, models: dict, error: str) -> None:
    with pytest.raises(ValidationError) as raised:
        load(train, **models)
    assert error in describe_validation_error(raised.value)


def test_train_off_needs_no_base() -> None:
    assert load({"enabled": False, "base": None}).train.base is None


def test_a_checkpoint_cut_short_is_skipped_and_removed(tmp_path: Path) -> None:
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert last_checkpoint(tmp_path / "missing") is None


def test_another_runs_checkpoints_go_and_a_finished_run_leaves_none(tmp_path: Path) -> None:
    old = run_folder(tmp_path, name="tuned", fingerprint="aaaa")
    (old / "sft").mkdir()
    new = run_folder(tmp_path, name="tuned", fingerprint="bbbb")
    assert not old.exists() and new.is_dir()
    discard(new)
    assert list(tmp_path.iterdir()) == []


def record(**changes: object) -> TrainingRecord:
    phases = [
        Phase("sft", rows=4, steps=3, epochs=1.5, resumed_at=0, steps_run=3, tokens=300, runtime_s=1.5,
              loss=[(1, 2.0), (2, 1.5), (3, 1.0)]),
        Phase("dpo", rows=4, steps=2, epochs=1.0, resumed_at=1, steps_run=1, tokens=100, runtime_s=0.5,
              loss=[(1, 0.69), (2, 0.5)]),
    ]  # fmt: skip
    values = {
        "fingerprint": "f",
        "name": "tuned",
        "base": "base",
        "base_model": "org/base",
        "method": "sft_then_dpo",
        "tuning": "lora",
        "merged": False,
        "task_ids": ["a", "b"],
        "trainable_parameters": 10,
        "phases": phases,
        "weights_sha": "w",
    }
    return TrainingRecord(**{**values, **changes})


def test_the_record_reads_back_and_the_loss_curve_counts_steps_across_phases(tmp_path: Path) -> None:
    written = record()
    (tmp_path / "training.json").write_text(written.to_json())
    assert read_record(tmp_path) == written
    write_loss_curve(written, tmp_path / "loss.csv")
    with (tmp_path / "loss.csv").open() as f:
        rows = [(r["phase"], int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
    assert rows == [("sft", 1, 2.0), ("sft", 2, 1.5), ("sft", 3, 1.0), ("dpo", 4, 0.69), ("dpo", 5, 0.5)]
    figures = written.metrics()
    assert (figures["sft"]["final_loss"], figures["dpo"]["tokens_per_s"], figures["tasks"]) == (1.0, 200.0, 2)


def test_the_fingerprint_follows_what_is_learned_not_how_the_run_goes(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text("x = 1\n")
    spec = ModelSpec(**LOCAL)

    def fingerprint(data: str = "d", **train: object) -> str:
        return run_fingerprint(params=TrainParams(**train), base=spec, data_sha=data, code=[code])

    same = fingerprint()
    assert fingerprint(save_steps=7, progress_every_s=1.0, push_to_hub="org/m", name="other") == same
    assert fingerprint(learning_rate=0.001) != same
    assert fingerprint(data="e") != same
    code.write_text("x = 2\n")
    assert fingerprint() != same


def test_a_tuned_model_is_cached_under_its_weights(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    assert tuned_identity(ModelSpec(**LOCAL)) == {}
    first = tuned_identity(ModelSpec(**LOCAL, adapter=str(adapter)))
    (adapter / "adapter_model.safetensors").write_bytes(b"two, retrained")
    assert tuned_identity(ModelSpec(**LOCAL, adapter=str(adapter))) != first
    served = ModelSpec(backend="openai", model="base", base_url="http://h/v1", adapter="my-lora")
    assert tuned_identity(served) == {"adapter": "my-lora"}


def test_an_adapter_that_is_not_there_or_not_for_this_base_is_one_line(tmp_path: Path) -> None:
    write_untrained(tmp_path / "off")
    with pytest.raises(ConfigError, match=r"models\.tuned\.adapter: .*off holds no trained adapter \(train\.enabled"):
        with_adapter(None, name="tuned", spec=ModelSpec(**LOCAL, adapter=str(tmp_path / "off")), token=None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/another"}))
    with pytest.raises(ConfigError) as error:
        with_adapter(None, name="tuned", spec=ModelSpec(**LOCAL, adapter=str(other)), token=None)
    assert str(error.value) == (
        f"params.yaml: models.tuned.adapter: {other} was trained on 'org/another', and models.tuned.model is 'org/base'"
    )


def test_compare_in_the_dataset_name_gives_each_comparison_a_dataset_of_its_own() -> None:
    models = {"base": LOCAL, "tuned": {**LOCAL, "adapter": "models/tuned"}}

    def dataset(name: str, compare: list[str]) -> str:
        raw = {"models": models, "compare": compare, "annotation": {"dataset": name}}
        return Params.model_validate(raw).annotation.dataset

    assert dataset("code-answers-{compare}", ["base", "tuned"]) == "code-answers-base-vs-tuned"
    assert dataset("code-answers-{compare}", ["tuned", "base"]) == "code-answers-tuned-vs-base"
    assert dataset("code-answers", ["base", "tuned"]) == "code-answers"
