"""export on a case worked out by hand; the files load with `datasets` and pass TRL's own format helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.analysis import analyze
from llm_feedback.annotation.receipt import Receipt
from llm_feedback.artifacts import (
    ANNOTATIONS,
    EXECUTIONS,
    JUDGE_PAIRWISE,
    JUDGMENTS,
    SCORES,
    TASKS,
    text_sha,
    write_table,
)
from llm_feedback.artifacts import (
    GENERATIONS as GENERATIONS_ARTIFACT,
)
from llm_feedback.errors import ConfigError
from llm_feedback.export import Exported, build_exports, in_test_split, push_to_hub, write_exports
from llm_feedback.params import AnalyzeParams, ExportParams
from llm_feedback.testing.synthetic_annotations import generations_for
from tests.project import copy_project, edit_params, run

TASK_IDS = ["t1", "t2", "t3", "t4"]
GENERATIONS = generations_for(TASK_IDS, ["a", "b"])
ANSWER = {(t, m): r for t, m, r in zip(*(GENERATIONS.column(c).to_pylist() for c in ("task_id", "model", "response")))}
TASKS_TABLE = TASKS.validate(
    pa.table(
        {
            "task_id": TASK_IDS,
            "instruction": [f"Task {t}" for t in TASK_IDS],
            "source": ["s"] * 4,
            "source_row": list(range(4)),
        }
    ),
    "tasks",
)


def rows(
    task: str,
    annotator: str,
    scores: dict[str, int | None],
    status: str = "submitted",
    corrected: str | None = None,
    minute: int = 0,
) -> list[dict]:
    return [
        {
            "record_id": task,
            "task_id": task,
            "annotator": annotator,
            "model": m,
            "position": p,
            "response_sha": text_sha(ANSWER[(task, m)]),
            "score": s,
            "status": status,
            "to_correct": None,
            "corrected_response": corrected,
            "comments": None,
            "updated_at": datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
        }
        for p, (m, s) in enumerate(scores.items(), 1)
    ]


ANNOTATIONS_TABLE = pa.Table.from_pylist(
    rows("t1", "x", {"a": 6, "b": 2})
    + rows("t1", "y", {"a": 7, "b": 3})  # mean a 6.5, b 2.5
    + rows("t2", "x", {"a": 3, "b": 4})  # nothing reaches 6, margin 1
    + rows("t3", "x", {"a": 2, "b": 1}, corrected="old fix", minute=1)
    + rows("t3", "y", {"a": 2, "b": 1}, corrected="```python\nfixed()\n```", minute=2)  # the latest correction wins
    + rows("t4", "x", {"a": 7, "b": None}, status="draft"),  # drafts never count
    schema=ANNOTATIONS.schema,
)


def scores_of(annotations: pa.Table, aggregate: str = "mean") -> pa.Table:
    """The scores artifact analyze writes for these annotations."""
    result = analyze(
        annotations=annotations,
        generations=GENERATIONS,
        compare=["a", "b"],
        params=AnalyzeParams(aggregate=aggregate, bootstrap=100),
    )
    return SCORES.validate(result.scores_table(), "scores")


def exports(annotations: pa.Table = ANNOTATIONS_TABLE, scores: pa.Table | None = None, **params: object) -> Exported:
    """export of these annotations, with analyze's scores of them unless others are given."""
    return build_exports(
        scores=scores_of(annotations) if scores is None else scores,
        annotations=annotations,
        generations=GENERATIONS,
        tasks=TASKS_TABLE,
        compare=["a", "b"],
        params=ExportParams(**params),
    )


def user(task: str) -> list[dict]:
    return [{"role": "user", "content": f"Task {task}"}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_sft_and_dpo_rows_by_hand() -> None:
    exported = exports(sft_min_score=6, dpo_min_margin=2, test_fraction=0.0)
    assert exported.sft["test"].num_rows == exported.dpo["test"].num_rows == 0
    assert exported.sft["train"].to_pylist() == [
        {
            "messages": user("t1") + assistant(ANSWER[("t1", "a")]),
            "task_id": "t1",
            "source": "model",
            "model": "a",
            "score": 6.5,
        },
        {
            "messages": user("t3") + assistant("```python\nfixed()\n```"),
            "task_id": "t3",
            "source": "correction",
            "model": None,
            "score": None,
        },
    ]
    assert exported.dpo["train"].to_pylist() == [
        {
            "prompt": user("t1"),
            "chosen": assistant(ANSWER[("t1", "a")]),
            "rejected": assistant(ANSWER[("t1", "b")]),
            "task_id": "t1",
            "chosen_model": "a",
            "rejected_model": "b",
            "score_chosen": 6.5,
            "score_rejected": 2.5,
        },
        {
            "prompt": user("t3"),
            "chosen": assistant("```python\nfixed()\n```"),
            "rejected": assistant(ANSWER[("t3", "b")]),
            "task_id": "t3",
            "chosen_model": "correction",
            "rejected_model": "b",
            "score_chosen": None,
            "score_rejected": 1.0,
        },
    ]
    majority = exports(scores=scores_of(ANNOTATIONS_TABLE, "majority"), sft_min_score=6.6, test_fraction=0.0)
    assert [r["task_id"] for r in majority.sft["train"].to_pylist()] == ["t3"], "majority of (6, 7) is their median"
    majority = exports(scores=scores_of(ANNOTATIONS_TABLE, "majority"), sft_min_score=6.5, test_fraction=0.0)
    assert [r["task_id"] for r in majority.sft["train"].to_pylist()] == ["t1", "t3"]


def test_the_split_is_by_task_stable_and_seeded() -> None:
    ids = [f"task-{i}" for i in range(2000)]
    test = {t for t in ids if in_test_split(t, 0, 0.1)}
    assert 150 < len(test) < 250
    assert test == {t for t in ids if in_test_split(t, 0, 0.1)}
    assert test != {t for t in ids if in_test_split(t, 1, 0.1)}
    assert test <= {t for t in ids if in_test_split(t, 0, 0.2)}, "a larger test share only adds tasks"


def test_files_load_with_datasets_and_pass_trls_format_helpers(tmp_path: Path, tiny_tokenizer: Path) -> None:
    import datasets
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    seed = next(s for s in range(100) if not in_test_split("t1", s, 0.5) and in_test_split("t3", s, 0.5))
    exported = exports(test_fraction=0.5, seed=seed)
    write_exports(exported, tmp_path / "export")
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    for kind, count in (("sft", 2), ("dpo", 2)):
        loaded = datasets.load_dataset(str(tmp_path / "export"), kind)
        assert sum(len(split) for split in loaded.values()) == count
        for split in loaded:
            jsonl = datasets.load_dataset("json", data_files=str(tmp_path / "export" / kind / f"{split}.jsonl"))[
                "train"
            ]
            assert jsonl.to_list() == loaded[split].to_list()
        for split in loaded.values():
            for example in split:
                assert is_conversational(example)
                rendered = apply_chat_template(example, tokenizer)
                assert all(isinstance(v, str) and v for v in rendered.values())
    train_tasks = set(datasets.load_dataset(str(tmp_path / "export"), "sft")["train"]["task_id"])
    test_tasks = set(datasets.load_dataset(str(tmp_path / "export"), "dpo")["test"]["task_id"])
    assert train_tasks == {"t1"} and test_tasks == {"t3"}, "a task is in train or in test, for SFT and DPO alike"

    only_train = exports(test_fraction=0)
    write_exports(only_train, tmp_path / "export")
    assert not list((tmp_path / "export").rglob("test.*")), "an empty split is not written (datasets cannot load it)"
    assert "split: test" not in (tmp_path / "export/README.md").read_text()
    assert set(datasets.load_dataset(str(tmp_path / "export"), "dpo")) == {"train"}


class FakeHub:
    """Stands in for the Hugging Face Hub, which tests cannot reach."""

    calls: ClassVar[list[tuple]] = []

    def __init__(self, token: str) -> None:
        FakeHub.calls.append(("init", token))

    def create_repo(self, repo_id: str, **kwargs) -> None:
        FakeHub.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path: str, repo_id: str, **kwargs):
        FakeHub.calls.append(("upload_folder", sorted(p.name for p in Path(folder_path).rglob("*.parquet")), repo_id))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/datasets/{repo_id}/commit/abc"})()


def test_push_to_hub_uploads_the_folder_with_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    write_exports(exports(test_fraction=0), tmp_path / "export")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="export HF_TOKEN"):
        push_to_hub(tmp_path / "export", "org/feedback", private=True)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    url = push_to_hub(tmp_path / "export", "org/feedback", private=True)
    assert url.endswith("org/feedback/commit/abc")
    assert FakeHub.calls == [
        ("init", "hf_fake_write_token"),
        ("create_repo", "org/feedback", {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", ["train.parquet", "train.parquet"], "org/feedback"),
    ]


def test_a_score_off_the_scale_never_reaches_the_training_data() -> None:
    spoiled = pa.Table.from_pylist(
        ANNOTATIONS_TABLE.to_pylist()
        + rows("t2", "z", {"a": 9, "b": 0})  # t2 has no answer at 6 or more, except by this impossible score
        + [{**r, "to_correct": "nobody"} for r in rows("t4", "z", {"a": 7, "b": 0}, corrected="```python\nz()\n```")],
        schema=ANNOTATIONS.schema,
    )
    exported = exports(spoiled, sft_min_score=6, dpo_min_margin=2, test_fraction=0.0)
    clean = exports(sft_min_score=6, dpo_min_margin=2, test_fraction=0.0)
    assert exported.sft["train"].equals(clean.sft["train"]) and exported.dpo["train"].equals(clean.dpo["train"])
    assert all(s is None or 0 <= s <= 7 for s in exported.sft["train"].column("score").to_pylist())


def rescored(scores: pa.Table, task: str, model: str, score: float) -> pa.Table:
    return pa.Table.from_pylist(
        [{**r, "score": score} if (r["task_id"], r["model"]) == (task, model) else r for r in scores.to_pylist()],
        schema=SCORES.schema,
    )


def test_export_takes_the_scores_analyze_decided_on() -> None:
    """The scores come from the scores artifact, not from the annotations: where the two differ, the artifact wins."""
    clean = exports(sft_min_score=6, dpo_min_margin=2, test_fraction=0.0)
    changed = exports(
        scores=rescored(scores_of(ANNOTATIONS_TABLE), "t2", "a", 7.0),
        sft_min_score=6,
        dpo_min_margin=2,
        test_fraction=0.0,
    )
    assert [(r["task_id"], r["model"], r["score"]) for r in changed.sft["train"].to_pylist()] == [
        ("t1", "a", 6.5),
        ("t2", "a", 7.0),
        ("t3", None, None),
    ]
    t2 = [
        (r["chosen_model"], r["rejected_model"], r["score_chosen"], r["score_rejected"])
        for r in changed.dpo["train"].to_pylist()
        if r["task_id"] == "t2"
    ]
    assert t2 == [("a", "b", 7.0, 4.0)] and not any(r["task_id"] == "t2" for r in clean.dpo["train"].to_pylist())
    unscored = exports(scores=SCORES.schema.empty_table(), test_fraction=0.0)
    assert [r["source"] for r in unscored.sft["train"].to_pylist()] == ["correction"], "corrections need no score"
    assert unscored.dpo["train"].num_rows == 0


@pytest.mark.slow
def test_dvc_reruns_export_when_analyze_changes_the_scores(tmp_path: Path) -> None:
    """Through real `dvc repro`: analyze writes data/scores.parquet, export builds on it; a change to how scores are
    chosen (analysis.py) reruns both, and new scores reach the training data."""
    repo = copy_project(tmp_path / "project")

    def two_models(params: dict) -> None:
        params["models"] = {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in "ab"}
        params["compare"] = ["a", "b"]
        params["export"]["test_fraction"] = 0.0

    edit_params(repo, two_models)
    data = repo / "data"
    write_table(TASKS_TABLE, data / "tasks.parquet", TASKS)
    write_table(GENERATIONS, data / "generations.parquet", GENERATIONS_ARTIFACT)
    write_table(ANNOTATIONS_TABLE, data / "annotations.parquet", ANNOTATIONS)
    for name, artifact in (("judgments", JUDGMENTS), ("judge_pairwise", JUDGE_PAIRWISE), ("executions", EXECUTIONS)):
        write_table(artifact.schema.empty_table(), data / f"{name}.parquet", artifact)
    Receipt(
        url="http://127.0.0.1:9",
        workspace="llm-feedback",
        dataset="code-answers",
        dataset_id="d",
        models=["a", "b"],
        records=4,
        settings_hash="s",
        content_hash="c",
    ).write(data / "push.json")

    first = run(["dvc", "repro", "--single-item", "analyze", "export"], repo)
    assert "; 3 of 4 tasks scored" in first.stdout and "-> data/scores.parquet" in first.stdout
    written = pq.read_table(data / "scores.parquet")
    assert written.equals(scores_of(ANNOTATIONS_TABLE))
    assert pq.read_table(data / "export/sft/train.parquet").equals(exports(test_fraction=0.0).sft["train"])

    with (repo / "src/llm_feedback/analysis.py").open("a") as f:
        f.write("# how scores are chosen changed\n")
    status = json.loads(run(["dvc", "status", "--json", "analyze", "export"], repo).stdout)
    assert set(status) == {"analyze", "export"}, status

    write_table(rescored(written, "t2", "a", 7.0), data / "scores.parquet", SCORES)
    assert "Running stage 'export'" in run(["dvc", "repro", "--single-item", "export"], repo).stdout
    sft = pq.read_table(data / "export/sft/train.parquet").to_pylist()
    assert [(r["task_id"], r["score"]) for r in sft] == [("t1", 6.5), ("t2", 7.0), ("t3", None)]
