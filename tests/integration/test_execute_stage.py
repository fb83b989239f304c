"""The execute stage on the shipped sample: reference solutions pass their tasks' tests, stubs fail them, prose has
no code; a rerun reuses every run; switched off, it writes an empty artifact."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llm_feedback.params import FetchParams
from llm_feedback.sources import fetch_tasks
from llm_feedback.testing.generations import answered
from tests.conftest import PROJECT_ROOT
from tests.project import make_project, run_stage
from tests.unit.test_sample import SOLUTIONS, stub_source

pytestmark = pytest.mark.slow
MODELS = ["reference", "stub", "chatty"]


def answers(name: str) -> dict[str, str]:
    return {
        "reference": f"Here it is.\n\n```python\n{SOLUTIONS[name]}```\n",
        "stub": f"```python\n{stub_source(name)}```",
        "chatty": "I would be happy to help, but I need more details first.",
    }


def project(folder: Path, enabled: bool) -> Path:
    params = {
        "fetch": {"path": str(PROJECT_ROOT / "data/sample/tasks.yaml")},
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
        "compare": MODELS,
        "execute": {"enabled": enabled, "cpu_s": 5, "wall_s": 10},
    }
    tasks = fetch_tasks(FetchParams.model_validate(params["fetch"])).table
    names = {
        t: next(n for n in re.findall(r"`(\w+)`", text) if n in SOLUTIONS)  # the task's function or class
        for t, text in zip(tasks.column("task_id").to_pylist(), tasks.column("instruction").to_pylist())
    }
    generations = answered({(t, m): answers(name)[m] for t, name in names.items() for m in MODELS})
    return make_project(folder, params=params, inputs={"tasks": tasks, "generations": generations})


def test_reference_solutions_pass_stubs_fail_and_a_rerun_reuses_every_run(tmp_path: Path) -> None:
    folder = project(tmp_path, enabled=True)
    first = run_stage("execute", folder, timeout=600)
    assert first.returncode == 0, first.stderr
    assert (
        "execute: reference: 44 pass, 0 fail, 0 error, 0 timeout, 0 no_code (pass rate 100%); 0 reused" in first.stdout
    )
    assert "execute: chatty: 0 pass, 0 fail, 0 error, 0 timeout, 44 no_code" in first.stdout
    summary = r"^execute: 132 runs on \d+ workers in bubblewrap, own network namespace -> data/executions.parquet$"
    assert re.search(summary, first.stdout, re.MULTILINE), first.stdout
    assert "warning" not in first.stderr, "the runs were contained by bubblewrap"
    table = pq.read_table(folder / "data/executions.parquet").to_pylist()
    stub = [r for r in table if r["model"] == "stub"]
    assert all(r["status"] in ("fail", "error") for r in stub) and sum(r["status"] == "fail" for r in stub) > 30
    reference = [r for r in table if r["model"] == "reference"]
    assert all(r["tests_passed"] == r["tests_total"] and r["tests_total"] >= 3 for r in reference)

    again = run_stage("execute", folder, timeout=600)
    assert (
        "execute: reference: 44 pass, 0 fail, 0 error, 0 timeout, 0 no_code (pass rate 100%); 44 reused" in again.stdout
    )
    assert "nothing ran" in again.stdout
    assert pq.read_table(folder / "data/executions.parquet").to_pylist() == table


def test_switched_off_it_writes_an_empty_artifact(tmp_path: Path) -> None:
    folder = project(tmp_path, enabled=False)
    result = run_stage("execute", folder, timeout=600)
    assert result.returncode == 0 and "disabled (execute.enabled: false)" in result.stdout
    assert pq.read_table(folder / "data/executions.parquet").num_rows == 0
