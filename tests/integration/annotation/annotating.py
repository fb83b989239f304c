"""What the push/pull tests share: inputs whose answers name their model, and annotators who log in and answer over
REST the way the web UI does."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pyarrow as pa

from llm_feedback.artifacts import GENERATIONS, TASKS
from llm_feedback.params import Params
from tests.conftest import PROJECT_ROOT

ANSWER_MARK = re.compile(r"# written by (\S+)")


def params_for(url: str, dataset: str, models: list[str], **annotation) -> Params:
    """Params that treat the test server as a hosted Argilla (URL + ARGILLA_API_KEY from the environment)."""
    return Params.model_validate(
        {
            "argilla": {"url": url},
            "annotation": {
                "dataset": dataset,
                "guidelines": str(PROJECT_ROOT / "annotation/guidelines.md"),
                **annotation,
            },
            "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in models},
            "compare": models,
        }
    )


def make_tasks(n: int, start: int = 0) -> pa.Table:
    ids = [f"{i:016x}" for i in range(start, start + n)]
    return TASKS.validate(
        pa.table(
            {
                "task_id": ids,
                "instruction": [f"Write a function `f{i}` that returns {i}." for i in range(start, start + n)],
                "source": ["sample"] * n,
                "source_row": list(range(start, start + n)),
            }
        ),
        "tasks",
    )


def make_generations(tasks: pa.Table, models: list[str], version: str = "") -> pa.Table:
    rows = []
    for task_id in tasks.column("task_id").to_pylist():
        for model in models:
            rows.append(
                {
                    "task_id": task_id,
                    "model": model,
                    "response": f"```python\n# written by {model}\ndef f():\n    return '{task_id}{version}'\n```",
                    "finish_reason": "stop",
                    "prompt_tokens": 10,
                    "completion_tokens": 20,
                    "latency_s": 0.5,
                    "attempts": 1,
                    "error": None,
                    "request_hash": f"{task_id}-{model}",
                }
            )
    return pa.Table.from_pylist(rows, schema=GENERATIONS.schema)


def writer_of(text: str) -> str:
    """The model an answer came from, read from the text the annotator sees."""
    match = ANSWER_MARK.search(text)
    assert match, text
    return match.group(1)


@dataclass
class Annotator:
    """An annotator session: logs in with username and password, as the UI does."""

    url: str
    username: str
    password: str

    def __post_init__(self) -> None:
        token = httpx.post(f"{self.url}/api/v1/token", data={"username": self.username, "password": self.password})
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )

    def respond(self, record_uuid: str, status: str, values: dict | None) -> None:
        body = {
            "status": status,
            "values": {k: {"value": v} for k, v in values.items()} if values is not None else None,
        }
        response = self.client.post(f"/api/v1/records/{record_uuid}/responses", json=body)
        assert response.status_code == 201, response.text
