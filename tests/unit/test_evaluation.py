"""The evaluate stage's study: the tuned model against its base on export's test split, with paths and a dataset of
its own, built from the main run's params without touching them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.errors import ConfigError
from llm_feedback.evaluation import evaluation_study, evaluation_tasks
from llm_feedback.params import Params
from llm_feedback.splits import in_test_split
from llm_feedback.testing.training_data import write_training_record
from llm_feedback.training.record import TrainingRecord

BASE = {"backend": "transformers", "model": "org/base", "device": "cpu"}


def params_in(folder: Path, **sections) -> Params:
    paths = {key: str(folder / value) for key, value in {"models": "models", "evaluation_data": "data/evaluation",
             "evaluation": "evaluation"}.items()}  # fmt: skip
    return Params.model_validate(
        {
            "paths": paths,
            "models": {"base": BASE, "other": {**BASE, "model": "org/other"}},
            "compare": ["base", "other"],
            "train": {"enabled": True, "base": "base"},
            **sections,
        }
    )


def trained(params: Params, *, merged: bool = False) -> TrainingRecord:
    return write_training_record(params.paths.models / "tuned", merged=merged, weights_sha="0123456789abcdef")


def test_the_study_compares_the_tuned_model_with_its_base_in_places_of_its_own(tmp_path: Path) -> None:
    params = params_in(tmp_path)
    trained(params)
    study = evaluation_study(params).params
    assert study.compare == ["tuned", "base"]
    assert study.models["tuned"].adapter == str(tmp_path / "models/tuned")
    assert study.models["tuned"].model == "org/base" and study.models["tuned"].device == "cpu"
    assert study.annotation.dataset == "code-answers-tuned-vs-base-01234567"
    assert study.paths.generations == tmp_path / "data/evaluation/generations.parquet"
    assert study.paths.metrics == tmp_path / "evaluation/metrics.json"
    assert study.paths.generation_cache == params.paths.generation_cache, "the base's answers come from the cache"
    assert not study.judge.enabled and not study.execute.enabled
    assert params.compare == ["base", "other"] and "tuned" not in params.models, "the main run's params are unchanged"


def test_a_merged_model_loads_from_its_folder_and_a_declared_entry_wins(tmp_path: Path) -> None:
    params = params_in(tmp_path)
    trained(params, merged=True)
    assert evaluation_study(params).params.models["tuned"].model == str(tmp_path / "models/tuned")
    declared = params_in(tmp_path, models={"base": BASE, "other": BASE, "tuned": {**BASE, "adapter": "served"}})
    assert evaluation_study(declared).params.models["tuned"].adapter == "served"


def test_no_trained_model_and_a_dataset_name_too_long_are_one_line_each(tmp_path: Path) -> None:
    params = params_in(tmp_path)
    with pytest.raises(ConfigError, match=r"^train\.name: .*models/tuned holds no trained model; run the train stage"):
        evaluation_study(params)
    trained(params)
    long = params_in(tmp_path, evaluate={"dataset": "x" * 200 + "-{weights}"})
    with pytest.raises(ConfigError, match=r"^evaluate\.dataset: 'x+-01234567' is longer than 200 characters$"):
        evaluation_study(long)


def test_the_tasks_are_the_test_split_cut_to_the_limit(tmp_path: Path) -> None:
    ids = [f"{i:016x}" for i in range(200)]
    tasks = pa.table({"task_id": ids})
    params = params_in(tmp_path, export={"test_fraction": 0.3, "seed": 7})
    kept = evaluation_tasks(tasks, params).column("task_id").to_pylist()
    assert kept == [t for t in ids if in_test_split(t, 7, 0.3)] and 40 < len(kept) < 80
    limited = params_in(tmp_path, export={"test_fraction": 0.3, "seed": 7}, evaluate={"limit": 5})
    assert evaluation_tasks(tasks, limited).column("task_id").to_pylist() == kept[:5]
