"""A secret pasted into params.yaml, met the way a user meets it: `dvc repro` in a git copy of the project stops at
the first stage, and the secret reaches neither dvc.lock, DVC's run cache, the output nor any file the run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow

TOKEN = "hf_" + "Mn8Bv7Cx6Za5Sd4Fg3Hj2Kl1Qw0ErTyUi"


@pytest.mark.parametrize(
    "paste",
    [
        lambda p: p["models"]["api"].update(api_key_env=TOKEN),
        lambda p: p["models"]["api"].update(base_url=f"http://me:{TOKEN}@127.0.0.1:9/v1"),
    ],
    ids=["api_key_env", "base_url"],
)
def test_dvc_repro_stops_before_a_pasted_token_is_recorded(tmp_path: Path, tiny_tokenizer: Path, paste) -> None:
    repo = copy_project(tmp_path / "project")

    def models(params: dict) -> None:
        params["models"] = {
            "local": {"backend": "transformers", "model": str(tiny_tokenizer)},
            "api": {"backend": "openai", "model": "served", "base_url": "http://127.0.0.1:9/v1"},
        }
        params["compare"] = ["local", "api"]
        paste(params)

    edit_params(repo, models)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    before = {p for p in repo.rglob("*") if p.is_file()}

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", "repro", "format"], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "fetch: error: params.yaml: models.api." in result.stderr + result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert not (repo / "dvc.lock").exists() and not (repo / "data/tasks.parquet").exists()
    for path in {p for p in repo.rglob("*") if p.is_file()} - before:
        assert TOKEN.encode() not in path.read_bytes(), f"{path.relative_to(repo)} holds the token"
