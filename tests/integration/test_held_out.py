"""No leakage: fetch keeps only export's test split when asked (the same draw export splits by), and analyze refuses
to compare a tuned model on tasks it was trained on, naming them, while it reports a comparison on held-out tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback import export, splits
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.artifacts import EXECUTIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS
from llm_feedback.errors import ConfigError, InputError
from llm_feedback.leakage import refuse_trained_tasks
from llm_feedback.params import ModelSpec
from llm_feedback.splits import held_out, in_test_split
from llm_feedback.testing.synthetic_annotations import annotations_for, generations_for
from llm_feedback.testing.training_data import write_training_record
from tests.conftest import PROJECT_ROOT
from tests.project import make_project, run_stage

TASK_IDS = [f"{i:016x}" for i in range(40)]
TRAINED = [t for t in TASK_IDS if not in_test_split(t, 0, 0.5)]
HELD_OUT = [t for t in TASK_IDS if in_test_split(t, 0, 0.5)]
BASE = {"backend": "transformers", "model": "org/base"}


def tasks(ids: list[str]) -> pa.Table:
    n = len(ids)
    return TASKS.validate(
        pa.table({"task_id": ids, "instruction": [f"Write f{t}" for t in ids], "source": ["s"] * n,
                  "source_row": list(range(n))}),
        "tasks",
    )  # fmt: skip


def tuned_adapter(folder: Path, trained_on: list[str]) -> Path:
    """A record as the train stage writes it beside an adapter (analyze reads nothing else of it)."""
    write_training_record(folder, trained_on=trained_on)
    return folder


def test_fetch_and_export_draw_the_same_test_split() -> None:
    assert export.in_test_split is splits.in_test_split
    kept = held_out(tasks(TASK_IDS), seed=0, fraction=0.5)
    assert kept.table.column("task_id").to_pylist() == HELD_OUT and 10 < len(HELD_OUT) < 30
    assert kept.line() == f"{len(HELD_OUT)} of 40 in export's test split (fetch.held_out)"
    with pytest.raises(InputError, match=r"^fetch\.held_out: none of the 40 tasks is in export's test split"):
        held_out(tasks(TASK_IDS), seed=0, fraction=0.0)


def test_a_tuned_model_on_tasks_it_was_trained_on_is_named_with_them(tmp_path: Path) -> None:
    models = {
        "base": ModelSpec(**BASE),
        "tuned": ModelSpec(**BASE, adapter=str(tuned_adapter(tmp_path / "tuned", TRAINED))),
    }
    generations = generations_for(TASK_IDS, ["base", "tuned"])
    with pytest.raises(ConfigError) as error:
        refuse_trained_tasks(compare=["base", "tuned"], models=models, generations=generations)
    shown = ", ".join(TRAINED[:5])
    assert str(error.value) == (
        f"compare: tuned was trained on {len(TRAINED)} of the tasks it is compared on ({shown} and "
        f"{len(TRAINED) - 5} more): compare it only on tasks it did not see (fetch.held_out: true keeps export's "
        "test split)"
    )
    refuse_trained_tasks(compare=["base", "tuned"], models=models, generations=generations_for(HELD_OUT, ["tuned"]))
    refuse_trained_tasks(compare=["base"], models=models, generations=generations)  # the base saw nothing


def fetch_held_out(folder: Path, **fetch) -> tuple[str, list[str]]:
    """The fetch stage on the shipped sample with held_out on (export's test split at 0.25, seed 3): its line and the
    tasks it kept."""
    params = {
        "fetch": {"path": str(PROJECT_ROOT / "data/sample/tasks.yaml"), "held_out": True, **fetch},
        "export": {"test_fraction": 0.25, "seed": 3},
        "models": {"base": BASE},
        "compare": ["base"],
    }
    result = run_stage("fetch", make_project(folder, params=params))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), pq.read_table(folder / "data/tasks.parquet").column("task_id").to_pylist()


def test_fetch_keeps_only_the_test_split_when_held_out(tmp_path: Path) -> None:
    line, kept = fetch_held_out(tmp_path)
    assert kept and all(in_test_split(t, 3, 0.25) for t in kept)
    assert line.endswith(f"; {len(kept)} of 44 in export's test split (fetch.held_out)")


def test_fetch_limit_counts_the_held_out_tasks_it_keeps(tmp_path: Path) -> None:
    """limit cuts after the held-out selection: 5 held-out tasks, not the held-out share of the first 5."""
    line, kept = fetch_held_out(tmp_path, limit=5)
    assert len(kept) == 5 and all(in_test_split(t, 3, 0.25) for t in kept)
    assert "in export's test split (fetch.held_out), then limit 5" in line


def analyze_project(folder: Path, compared_on: list[str]) -> Path:
    """base and tuned, each answered and rated on `compared_on`; tuned's record says it was trained on TRAINED."""
    adapter = tuned_adapter(folder / "models/tuned", TRAINED)
    models = {"base": BASE, "tuned": {**BASE, "adapter": str(adapter)}}
    quality = {"tuned": 5.0, "base": 3.0}
    folder = make_project(
        folder,
        params={"models": models, "compare": ["tuned", "base"]},
        inputs={
            "tasks": tasks(compared_on),
            "generations": generations_for(compared_on, list(quality)),
            "annotations": annotations_for(compared_on, quality, {"ann-a": 0.0, "ann-b": 0.5}),
            "judgments": JUDGMENTS.schema.empty_table(),
            "executions": EXECUTIONS.schema.empty_table(),
        },
    )
    pq.write_table(JUDGE_PAIRWISE.schema.empty_table(), folder / "data/judge_pairwise.parquet")
    Receipt(
        url="http://127.0.0.1:9",
        workspace="llm-feedback",
        dataset="tuned-vs-base",
        dataset_id="d",
        models=list(quality),
        records=len(compared_on),
        settings_hash="s",
        content_hash="c",
    ).write(folder / "data/push.json")
    return folder


@pytest.mark.slow
def test_analyze_refuses_a_tuned_model_on_its_training_tasks_and_reports_it_on_held_out_ones(tmp_path: Path) -> None:
    leaked = analyze_project(tmp_path / "leaked", TASK_IDS)
    refused = run_stage("analyze", leaked)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"analyze: error: compare: tuned was trained on {len(TRAINED)} of the tasks it is ")
    assert not (leaked / "metrics.json").exists() and not (leaked / "data/scores.parquet").exists()

    fair = analyze_project(tmp_path / "fair", HELD_OUT)
    analyzed = run_stage("analyze", fair)
    assert analyzed.returncode == 0, analyzed.stderr
    pair = json.loads((fair / "metrics.json").read_text())["pairwise"]["tuned_vs_base"]
    assert pair["difference"] > 0 and pair["ci_low"] > 0, pair
