"""Project folders for tests, and stages run in them the way DVC runs them: a folder laid out with given params and
input artifacts, or a git copy of the whole project to run real `dvc` commands in, the way a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from llm_feedback.artifacts import (
    ANNOTATIONS,
    EXECUTIONS,
    GENERATIONS,
    JUDGMENTS,
    PROMPTS,
    SCORES,
    TASKS,
    ArtifactSchema,
    write_table,
)
from llm_feedback.params import Paths
from tests.conftest import PROJECT_ROOT

# The stages' input artifacts, by their names under `paths:`.
CONTRACTS: dict[str, ArtifactSchema] = {
    "tasks": TASKS,
    "prompts": PROMPTS,
    "generations": GENERATIONS,
    "judgments": JUDGMENTS,
    "executions": EXECUTIONS,
    "annotations": ANNOTATIONS,
    "scores": SCORES,
}


def make_project(folder: Path, *, params: Mapping[str, Any], inputs: Mapping[str, pa.Table] | None = None) -> Path:
    """`folder` (created if missing) as a stage finds it: params.yaml holding `params`, and each input table, keyed by
    its name under `paths:`, written where those params put it, checked against its artifact contract. Only `paths:`
    is read here, so that a test may hand a stage params it must refuse."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(dict(params)))
    if inputs:
        paths = Paths.model_validate(params.get("paths") or {})
        for name, table in inputs.items():
            write_table(table, folder / getattr(paths, name), CONTRACTS[name])
    return folder


def _stage_env(env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment as `dvc repro` in the project's venv passes it on: this checkout importable, the
    venv's commands first; `env` sets variables (None unsets one)."""
    merged = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PATH": _venv_path()}
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def run_stage(
    name: str, folder: Path, *, env: Mapping[str, str | None] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m stages.<name>` in `folder`, with its output captured; the caller judges the exit code."""
    return subprocess.run(
        _stage_command(name),
        cwd=folder,
        env=_stage_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_stage(name: str, folder: Path, *, env: Mapping[str, str | None] | None = None) -> subprocess.Popen[bytes]:
    """The same run in the background with its output discarded, for a test that kills it half way."""
    return subprocess.Popen(
        _stage_command(name), cwd=folder, env=_stage_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`llm-feedback <args>` (as `python -m llm_feedback.cli`) in `cwd`; the caller judges the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "llm_feedback.cli", *args],
        cwd=cwd,
        env={**os.environ, "PATH": _venv_path()},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _stage_command(name: str) -> list[str]:
    return [sys.executable, "-m", f"stages.{name}"]


def _venv_path() -> str:
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env={**os.environ, "PATH": _venv_path()}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_project(target: Path) -> Path:
    """The project's own files (tracked or not ignored), as a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (PROJECT_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, target / name)
    run(["git", "init", "-q", "-b", "main"], target)
    run(["git", "config", "user.email", "tests@example.invalid"], target)
    run(["git", "config", "user.name", "tests"], target)
    return target


def edit_params(repo: Path, edit) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
