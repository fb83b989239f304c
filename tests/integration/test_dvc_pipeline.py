"""fetch and format through real `dvc repro` in a git copy of the project, and artifacts shared through the default
remote: the way a user runs and shares the pipeline."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow


def test_fetch_and_format_rerun_only_what_changed_and_share_through_the_default_remote(
    tmp_path: Path, tiny_tokenizer: Path
) -> None:
    repo = copy_project(tmp_path / "project")

    def use_local_models(params: dict) -> None:
        params["models"] = {
            "local": {"backend": "transformers", "model": str(tiny_tokenizer)},
            "api": {"backend": "openai", "model": "served", "base_url": "http://127.0.0.1:9/v1"},
        }
        params["compare"] = ["local", "api"]

    edit_params(repo, use_local_models)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)

    first = run(["dvc", "repro", "format"], repo)
    assert "fetch: 44 tasks -> data/tasks.parquet" in first.stdout
    assert "format: 88 prompts for 44 tasks x 2 models" in first.stdout
    prompts = pq.read_table(repo / "data/prompts.parquet")
    assert prompts.column("model").to_pylist() == ["local"] * 44 + ["api"] * 44
    assert "Data and pipelines are up to date" in run(["dvc", "repro", "format"], repo).stdout

    tasks_mtime = (repo / "data/tasks.parquet").stat().st_mtime_ns
    edit_params(repo, lambda p: p["format"].update(system_prompt="Answer with one Python code block."))
    second = run(["dvc", "repro", "format"], repo)
    assert "Stage 'fetch' didn't change, skipping" in second.stdout
    assert "Running stage 'format'" in second.stdout
    assert (repo / "data/tasks.parquet").stat().st_mtime_ns == tasks_mtime
    messages = pq.read_table(repo / "data/prompts.parquet").column("messages").to_pylist()
    assert messages[0][0] == {"role": "system", "content": "Answer with one Python code block."}

    run(["dvc", "push"], repo)
    assert (tmp_path / "llm-feedback-dvc-remote").is_dir(), "the default remote is a folder beside the repository"
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "run"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "pull", "--with-deps", "format"], clone)
    for artifact in ("data/tasks.parquet", "data/prompts.parquet"):
        assert (clone / artifact).read_bytes() == (repo / artifact).read_bytes()
    assert "Data and pipelines are up to date" in run(["dvc", "repro", "format"], clone).stdout

    experiment = run(
        ["dvc", "exp", "run", "format", "-S", "fetch.limit=5", "-S", 'format.system_prompt="Answer in Python."'], clone
    )
    assert "fetch: 5 tasks" in experiment.stdout
    assert pq.read_table(clone / "data/prompts.parquet").num_rows == 10


def test_a_team_pays_for_each_generation_once(tmp_path: Path) -> None:
    """After `dvc push`, a fresh clone's `dvc pull` + `dvc repro` sends nothing, and adding a model sends only its
    requests: the pulled generations artifact counts as a cache."""
    from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer

    with FakeLLMServer() as server:
        repo = copy_project(tmp_path / "project")

        def api_models(names: list[str]):
            def edit(params: dict) -> None:
                params["fetch"]["limit"] = 5
                params["models"] = {
                    name: {"backend": "openai", "model": name, "base_url": f"{server.url}/v1"}
                    for name in ["a", "b", "c"]
                }
                params["compare"] = names

            return edit

        edit_params(repo, api_models(["a", "b"]))
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "project"], repo)
        first = run(["dvc", "repro", "generate"], repo)
        assert "generate: 10 generations -> data/generations.parquet" in first.stdout
        assert server.count(CHAT_PATH) == 10
        run(["dvc", "push"], repo)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "run"], repo)

        clone = tmp_path / "teammate"
        run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
        run(["dvc", "pull", "--with-deps", "generate"], clone)
        assert "Data and pipelines are up to date" in run(["dvc", "repro", "generate"], clone).stdout
        assert server.count(CHAT_PATH) == 10

        edit_params(clone, api_models(["a", "b", "c"]))
        third = run(["dvc", "repro", "generate"], clone)
        assert "generate: a: 5 ok, 0 failed" in third.stdout and "5 from cache, 0 sent" in third.stdout
        assert server.count(CHAT_PATH) == 15  # only model c was asked
        assert pq.read_table(clone / "data/generations.parquet").num_rows == 15
