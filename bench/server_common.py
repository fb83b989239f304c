"""Shared by the benchmarks: a server process on a temp folder, and records shaped like the pipeline's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

WORDS = (
    "the model returns a function that sorts the list in place and handles empty input correctly while the other "
    "response explains recursion with an example about trees graphs strings numbers parsing errors tests python "
    "markdown code review performance memory loop index value key dictionary class method argument result"
).split()


@dataclasses.dataclass
class Server:
    url: str
    api_key: str
    process: subprocess.Popen


@contextlib.contextmanager
def running_server(python: str, data_dir: Path, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    api_key = "bench." + secrets.token_urlsafe(16)
    path = data_dir / "credentials.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": "owner", "password": secrets.token_urlsafe(12), "api_key": api_key}, handle)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [os.path.abspath(python), "-m", "annotation_server", "--data-dir", str(data_dir), "--port", str(port), *extra],
        stdout=subprocess.PIPE, text=True, cwd=data_dir,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("annotation_server: ready on "):
            break
    else:
        raise RuntimeError("the server did not start")
    try:
        yield Server(f"http://127.0.0.1:{port}", api_key, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


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
