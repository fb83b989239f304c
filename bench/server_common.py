"""Shared by the benchmarks: a server process on a temp folder, and records shaped like the pipeline's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

from llm_feedback.annotation.embedded import EmbeddedServer, start, stop
from llm_feedback.testing.ports import free_port

WORDS = [
    *[
        "the",
        "model",
        "returns",
        "a",
        "function",
        "that",
        "sorts",
        "the",
        "list",
        "in",
        "place",
        "and",
        "handles",
        "empty",
        "input",
        "correctly",
        "while",
        "the",
        "other",
        "response",
        "explains",
        "recursion",
        "with",
        "an",
        "example",
        "about",
        "trees",
        "graphs",
        "strings",
        "numbers",
        "parsing",
        "errors",
        "tests",
        "python",
        "markdown",
        "code",
        "review",
        "performance",
        "memory",
        "loop",
        "index",
        "value",
        "key",
        "dictionary",
        "class",
        "method",
        "argument",
        "result",
    ]
]


@dataclasses.dataclass
class Server:
    url: str
    api_key: str
    pid: int  # the server process, to read its CPU time


@contextlib.contextmanager
def running_server(python: str, data_dir: Path, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """The embedded server on a throwaway folder, started as the pipeline starts it, with extra launcher options."""
    server = EmbeddedServer(
        data_dir=data_dir, port=free_port(), venv_dir=Path(python).absolute().parents[1], launcher_args=extra
    )
    credentials, _ = start(server)
    assert credentials is not None, "a throwaway folder gets new credentials"
    try:
        yield Server(server.url, credentials.api_key, json.loads(server.pid_file.read_text())["pid"])
    finally:
        stop(server)


def pipeline_like_settings():
    import argilla as rg

    return rg.Settings(
        fields=[rg.TextField(name="instruction"), rg.TextField(name="response_1"), rg.TextField(name="response_2")],
        questions=[
            rg.RatingQuestion(name="score_response_1", values=list(range(8))),
            rg.RatingQuestion(name="score_response_2", values=list(range(8))),
            rg.LabelQuestion(name="correct", labels=["Response 1", "Response 2", "Both", "Neither"], required=False),
            rg.TextQuestion(name="corrected_response", required=False),
            rg.TextQuestion(name="comments", required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="group", visible_for_annotators=True),
            rg.TermsMetadataProperty(name="source"),
            rg.IntegerMetadataProperty(name="length"),
        ],
    )


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def pipeline_like_records(count: int, seed: int = 1):
    import argilla as rg

    rng = random.Random(seed)
    records = []
    for i in range(count):
        records.append(
            rg.Record(
                id=f"task{i:06d}",
                fields={"instruction": text(rng, 40), "response_1": text(rng, 180), "response_2": text(rng, 180)},
                metadata={"group": f"g{i % 3}", "source": rng.choice(["sample", "hub"]), "length": rng.randint(1, 900)},
                suggestions=[
                    rg.Suggestion("score_response_1", rng.randint(0, 7), score=round(rng.random(), 3), agent="judge"),
                    rg.Suggestion("score_response_2", rng.randint(0, 7), score=round(rng.random(), 3), agent="judge"),
                ],
            )
        )
    return records


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.2)
