"""The stage entry points as DVC runs them: one summary line, or one error line, an exit code and no artifact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.project import make_project, run_stage


def project(folder: Path, tokenizer: Path, **fetch: object) -> Path:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["fetch"].update({"path": str(PROJECT_ROOT / "data/sample/tasks.yaml"), **fetch})
    for spec in params["models"].values():
        spec["tokenizer"] = str(tokenizer)
    return make_project(folder, params=params)


def test_fetch_then_format(tmp_path: Path, tiny_tokenizer: Path) -> None:
    folder = project(tmp_path, tiny_tokenizer, limit=3)
    fetched = run_stage("fetch", folder)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.splitlines() == [
        "fetch: 3 tasks -> data/tasks.parquet (44 rows read from sample; dropped 0 empty and 0 duplicate instructions)"
    ]
    formatted = run_stage("format", folder)
    assert formatted.returncode == 0, formatted.stderr
    assert formatted.stdout.startswith("format: 6 prompts for 3 tasks x 2 models -> data/prompts.parquet")
    assert formatted.stderr == ""
    assert (
        pq.read_table(folder / "data/prompts.parquet").column("prompt")[0].as_py().endswith("<|im_start|>assistant\n")
    )


@pytest.mark.parametrize(
    ("content", "fetch", "code", "error"),
    [
        (None, {"limit": -1}, 2, "params.yaml: fetch.limit: Input should be greater than or equal to 1 (got -1)"),
        (
            b"instruction\n",
            {"path": "t.jsonl", "source": "file"},
            1,
            "t.jsonl: line 1: not valid JSON (Expecting value)",
        ),
        (
            b'instruction,x\n"a",1\n"b",2,3\n',
            {"path": "t.csv", "source": "file"},
            1,
            "t.csv: line 3: expected 2 fields like the header, got 3",
        ),
        (
            b'instruction\n"\xe9t\xe9"\n',
            {"path": "t.csv", "source": "file"},
            1,
            "t.csv: line 2: not valid UTF-8 (re-save the file as UTF-8)",
        ),
        (
            b"prompt\nx\n",
            {"path": "t.csv", "source": "file"},
            1,
            "t.csv: no column 'instruction' (set fetch.instruction_column; columns: prompt)",
        ),
    ],
)
def test_bad_input_one_line_exit_code_nothing_written(
    tmp_path: Path, tiny_tokenizer: Path, content: bytes | None, fetch: dict, code: int, error: str
) -> None:
    if content is not None:
        (tmp_path / fetch["path"]).write_bytes(content)
    result = run_stage("fetch", project(tmp_path, tiny_tokenizer, **fetch))
    assert result.returncode == code
    assert result.stderr.splitlines() == [f"fetch: error: {error}"]
    assert not (tmp_path / "data").exists()


def test_params_that_are_not_yaml(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("fetch: [unclosed\n")
    result = run_stage("fetch", tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("fetch: error: params.yaml: not valid YAML: line 2, column 1")


def test_format_without_tasks_says_which_stage_to_run(tmp_path: Path, tiny_tokenizer: Path) -> None:
    result = run_stage("format", project(tmp_path, tiny_tokenizer))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "format: error: data/tasks.parquet: not found (run the stage that writes the tasks artifact first)"
    )


def params_edited(folder: Path, edit) -> Path:
    """The shipped params.yaml, comments and all, with one edit a user might make."""
    folder.mkdir()
    (folder / "params.yaml").write_text(edit((PROJECT_ROOT / "params.yaml").read_text()))
    return folder


def written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name != "params.yaml"]


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (
            lambda t: t + "fetch:\n  limit: 2\n",
            r"params.yaml: not valid YAML: line \d+, column 1: fetch is given twice \(first at line \d+\); keep one",
        ),
        (
            lambda t: t.replace("seed: 42", "seed: true", 1),
            r"params.yaml: fetch.seed: Input should be a valid integer \(got True\)",
        ),
        (
            lambda t: t.replace("tasks: data/tasks.parquet", "tasks: ../elsewhere/tasks.parquet"),
            r"params.yaml: paths.tasks: ../elsewhere/tasks.parquet is outside the project folder .*",
        ),
        (
            lambda t: t.replace("tasks: data/tasks.parquet", "tasks: data"),
            r"params.yaml: paths.prompts: data/prompts.parquet overlaps paths.tasks \(data\); give each its own place",
        ),
        (
            lambda t: t.replace("workspace: llm-feedback", "workspace: my team"),
            r"params.yaml: annotation.workspace: 'my team' is not a name Argilla takes: "
            r"use letters, digits, '-' and '_'",
        ),
    ],
)
def test_bad_params_stop_the_stage_in_one_line_before_anything_is_written(tmp_path: Path, edit, error: str) -> None:
    folder = params_edited(tmp_path / "project", edit)
    result = run_stage("fetch", folder)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert re.fullmatch(f"fetch: error: {error}", result.stderr.strip()), result.stderr
    assert written_files(tmp_path) == [], "nothing written, inside the project or beside it"


TOKEN = "hf_" + "Q9w8E7r6T5y4U3i2O1p0AsDfGhJkLzXc"


@pytest.mark.parametrize(
    ("stage", "edit", "key"),
    [
        (
            "generate",
            lambda t: t.replace(
                "    base_url: http://localhost:8000/v1\n",
                f"    base_url: http://localhost:8000/v1\n    api_key_env: {TOKEN}\n",
            ),
            "models.local-server.api_key_env",
        ),
        ("export", lambda t: t.replace("push_to_hub: null", f"push_to_hub: {TOKEN}"), "export.push_to_hub"),
        ("export", lambda t: t.replace("push_to_hub: null", f"push_to_hub: me/{TOKEN}"), "export.push_to_hub"),
        (
            "generate",
            lambda t: t.replace("base_url: http://localhost:8000/v1", f"base_url: http://me:{TOKEN}@localhost:8000/v1"),
            "models.local-server.base_url",
        ),
    ],
)
def test_a_token_in_params_is_refused_and_appears_nowhere(tmp_path: Path, edit, key: str, stage: str) -> None:
    folder = params_edited(tmp_path / "project", edit)
    assert TOKEN in (folder / "params.yaml").read_text()
    result = run_stage(stage, folder)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{stage}: error: params.yaml: {key}: ") and len(result.stderr.splitlines()) == 1
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN[3:20] not in result.stdout + result.stderr, "not even part of it"
    assert written_files(tmp_path) == []


def test_fetch_takes_a_categorical_column_and_drops_invisible_instructions(
    tmp_path: Path, tiny_tokenizer: Path
) -> None:
    import pandas as pd

    texts = ["Write `f`.", "\u200b\u200d", "Write `g`.", "\ufeff \u2060", "Write `f`."]
    pd.DataFrame({"instruction": pd.Categorical(texts)}).to_parquet(tmp_path / "tasks.parquet")
    result = run_stage("fetch", project(tmp_path, tiny_tokenizer, source="file", path="tasks.parquet"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "fetch: 2 tasks -> data/tasks.parquet (5 rows read from file; dropped 2 empty and 1 duplicate instructions)"
    ]
    assert pq.read_table(tmp_path / "data/tasks.parquet").column("instruction").to_pylist() == [
        "Write `f`.",
        "Write `g`.",
    ]


def test_an_output_path_that_is_a_folder_is_refused_before_the_stage_runs(tmp_path: Path, tiny_tokenizer: Path) -> None:
    folder = project(tmp_path, tiny_tokenizer, limit=3)
    (folder / "data/tasks.parquet").mkdir(parents=True)
    result = run_stage("fetch", folder)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fetch: error: params.yaml: paths.tasks: data/tasks.parquet is a folder; name a file"
    ]
    assert written_files(tmp_path) == []


@pytest.mark.parametrize("stage", ["pull", "analyze"])
def test_a_receipt_of_the_wrong_shape_stops_pull_and_analyze_in_one_line(tmp_path: Path, stage: str) -> None:
    folder = params_edited(tmp_path / "project", lambda t: t)
    (folder / "data").mkdir()
    receipt = {
        "url": "http://127.0.0.1:9",
        "workspace": "llm-feedback",
        "dataset": "code-answers",
        "dataset_id": "x",
        "models": "fake-a",
        "records": 1,
        "settings_hash": "s",
        "content_hash": "c",
        "version": 1,
        "blinding": {"r": {"task_id": "t", "models": ["fake-a"]}},
    }
    (folder / "data/push.json").write_text(json.dumps(receipt))
    result = run_stage(stage, folder)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (
            f"{stage}: error: data/push.json: not a push receipt: models: Input should be a valid list (got 'fake-a'); "
            "run push again"
        )
    ]
    assert sorted(p.relative_to(folder).as_posix() for p in written_files(folder)) == ["data/push.json"]
