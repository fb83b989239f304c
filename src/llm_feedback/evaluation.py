"""The tuned model against its base, as a study of its own: the main run's settings with `compare: [tuned, base]`,
only export's test-split tasks, artifacts under paths.evaluation_data and paths.evaluation, and an annotation dataset
per trained model. Each experiment (`dvc exp run -S train.method=dpo`) thus gets a verdict of its own, while the main
comparison, its dataset and its verdict stay as they are; and it needs no edit of models: or compare:, which the
train stage's own params include (a change there would retrain)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from llm_feedback.errors import ConfigError
from llm_feedback.params import DATASET_NAME_MAX, ModelSpec, Params
from llm_feedback.splits import held_out
from llm_feedback.training.record import TrainingRecord, read_record

NAME_FIELDS = ("{tuned}", "{base}", "{weights}")


@dataclass(frozen=True)
class Study:
    """What the evaluate stage runs the main stages with, and the model they compare."""

    params: Params
    record: TrainingRecord

    @property
    def tuned(self) -> str:
        return self.params.compare[0]


def evaluation_study(params: Params) -> Study:
    """The evaluation's params; train.enabled must be on and its model written."""
    train = params.train
    folder = params.paths.models / train.name
    record = read_record(folder)
    if record is None:
        raise ConfigError(f"train.name: {folder} holds no trained model; run the train stage (dvc repro train)")
    models = {**params.models, train.name: params.models.get(train.name) or _tuned_spec(params, folder, record)}
    data, out = params.paths.evaluation_data, params.paths.evaluation
    paths = params.paths.model_copy(
        update={
            "tasks": data / "tasks.parquet",
            "prompts": data / "prompts.parquet",
            "generations": data / "generations.parquet",
            "judgments": data / "judgments.parquet",  # never written: the evaluation is rated by people only
            "judge_pairwise": data / "judge_pairwise.parquet",
            "executions": data / "executions.parquet",
            "push_receipt": data / "push.json",
            "annotations": data / "annotations.parquet",
            "scores": data / "scores.parquet",
            "metrics": out / "metrics.json",
            "plots": out / "plots",
            "reports": out / "reports",
        }
    )
    annotation = params.annotation.model_copy(update={"dataset": dataset_name(params, record)})
    study = params.model_copy(
        update={
            "paths": paths,
            "models": models,
            "compare": [train.name, str(train.base)],
            "annotation": annotation,
            "judge": params.judge.model_copy(update={"enabled": False}),
            "execute": params.execute.model_copy(update={"enabled": False}),
        }
    )
    return Study(study, record)


def dataset_name(params: Params, record: TrainingRecord) -> str:
    """evaluate.dataset with the models and the weights' hash filled in: a retrained model gets a dataset of its own,
    so the ratings of an earlier one are never mixed with it, and rerunning the same model finds its ratings."""
    template = params.evaluate.dataset
    name = template
    for field, value in zip(NAME_FIELDS, (record.name, record.base, record.weights_sha[:8]), strict=True):
        name = name.replace(field, value)
    if len(name) > DATASET_NAME_MAX:
        raise ConfigError(f"evaluate.dataset: {name!r} is longer than {DATASET_NAME_MAX} characters")
    return name


def evaluation_tasks(tasks: pa.Table, params: Params) -> pa.Table:
    """The main run's tasks in export's test split, at most evaluate.limit of them: a tuned model is compared only on
    tasks it never saw."""
    kept = held_out(tasks, seed=params.export.seed, fraction=params.export.test_fraction).table
    limit = params.evaluate.limit
    return kept if limit is None else kept.slice(0, limit)


def _tuned_spec(params: Params, folder: Path, record: TrainingRecord) -> ModelSpec:
    """The base with the adapter on it; a merged or fully tuned model loads from its own folder."""
    base = params.models[str(params.train.base)]
    if record.tuning == "lora" and not record.merged:
        return base.model_copy(update={"adapter": str(folder)})
    return base.model_copy(update={"model": str(folder), "tokenizer": None})
