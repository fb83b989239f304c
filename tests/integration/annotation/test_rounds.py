"""Annotation in rounds against the real embedded server: one round on the server at a time, the next only once every
record of the current one has its submitted responses, each task's chance of being published by each round in the
receipt, and a rerun that changes nothing."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.dataset_settings import shown_answer
from llm_feedback.annotation.push import Pushed, push
from llm_feedback.annotation.rounds import UNIFORM_SHARE, uniform
from llm_feedback.artifacts import JUDGE_PAIRWISE, JUDGMENTS
from llm_feedback.errors import ConfigError
from llm_feedback.params import Params
from llm_feedback.testing.argilla_records import owner_records
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import Annotator, make_generations, make_tasks, params_for, writer_of
from tests.integration.annotation.conftest import RunningServer
from tests.project import make_project, run_stage

MODELS = ["alpha", "beta"]
SCORES = {"score_response_1": 5, "score_response_2": 2}
_names = (f"rounds-{i}" for i in itertools.count())


@pytest.fixture
def hosted(argilla_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    return argilla_server


def raters(server: RunningServer, tmp_path: Path, names: list[str]) -> list[Annotator]:
    params = params_for(server.url, "unused", MODELS)
    store = tmp_path / "annotators.json"
    add_annotators(resolve(params.argilla), workspace=params.annotation.workspace, usernames=names, store=store)
    passwords = json.loads(store.read_text())[server.url]
    return [Annotator(server.url, name, passwords[name]) for name in names]


def on_server(server: RunningServer, pushed: Pushed) -> dict[str, dict]:
    return {r["external_id"]: r for r in owner_records(server.url, server.api_key, pushed.receipt.dataset_id)}


def judged(tasks: pa.Table, gaps: dict[str, int]) -> pa.Table:
    """The judge's scores: alpha 7 on every task, beta 7 - gap."""
    rows = [
        {
            "task_id": task,
            "model": model,
            "judge": "j",
            "score": 7 if model == "alpha" else 7 - gaps[task],
            "rationale": None,
            "error": None,
            "answer": "",
            "request_hash": f"{task}-{model}",
        }
        for task in tasks.column("task_id").to_pylist()
        for model in MODELS
    ]
    return pa.Table.from_pylist(rows, schema=JUDGMENTS.schema)


@pytest.mark.slow
def test_rounds_go_out_one_at_a_time_each_once_the_last_is_done(hosted: RunningServer, tmp_path: Path) -> None:
    params = params_for(hosted.url, next(_names), MODELS, assignment="overlap", min_submitted=2, round_size=8)
    tasks = make_tasks(24)
    generations = make_generations(tasks, MODELS)
    first = push(params, tasks=tasks, generations=generations)
    receipt = first.receipt
    drawn = receipt.rounds[0]["drawn"]
    assert receipt.rounds == [{"round": 1, "tasks": 24, "expected": pytest.approx(8.0), "drawn": drawn, "seed": 42}]
    records = on_server(hosted, first)
    assert 0 < drawn < 24 and set(records) == set(receipt.blinding) and first.created == receipt.records == drawn
    assert [(e["round"], e["probabilities"]) for e in receipt.blinding.values()] == [
        (1, [pytest.approx(1 / 3)])
    ] * drawn
    assert first.line(output=Path("p.json")).startswith(
        f"round 1 of at most 3: {drawn} records published; {drawn} records in llm-feedback/"
    )

    ann, bob, cat = raters(hosted, tmp_path, ["round-ann", "round-bob", "round-cat"])
    for record in records.values():
        ann.respond(record["id"], "submitted", SCORES)
    *most, last = records.values()
    for record in most:
        bob.respond(record["id"], "submitted", SCORES)
    cat.respond(last["id"], "draft", SCORES)
    waiting = push(params, tasks=tasks, generations=generations, previous=receipt)
    assert waiting.receipt == receipt and (waiting.created, waiting.unchanged) == (0, drawn)
    assert waiting.line(output=Path("p.json")).startswith(
        f"round 1: {drawn - 1} of {drawn} records done; next round when all are; {drawn} records in"
    ), "one submitted response and a draft are not min_submitted: 2"
    assert set(on_server(hosted, waiting)) == set(records), "nothing else is on the server"

    bob.respond(last["id"], "submitted", SCORES)
    seen = dict(receipt.blinding)
    params = params.model_copy(update={"annotation": params.annotation.model_copy(update={"seed": 7})})
    while len(seen) < 24:
        pushed = push(params, tasks=tasks, generations=generations, previous=receipt)
        new = {rid: e for rid, e in pushed.receipt.blinding.items() if rid not in seen}
        number = pushed.receipt.current_round
        assert receipt.current_round < number <= 3 and pushed.receipt.rounds[-1]["drawn"] == len(new) == pushed.created
        assert pushed.receipt.rounds[: len(receipt.rounds)] == receipt.rounds, "earlier draws are kept"
        assert pushed.receipt.rounds[len(receipt.rounds) :] == [
            {
                "round": n,
                "tasks": 24,
                "expected": pytest.approx(min(24, 8 * n)),
                "drawn": len(new) if n == number else 0,
                "seed": 42,
            }
            for n in range(receipt.current_round + 1, number + 1)
        ], "a round that draws none is followed by the next at once; the first round's seed stays"
        chance = [0.0, 1 / 3, 2 / 3, 1.0]  # of every task, by each round: round x 8 of 24
        assert all(
            pushed.receipt.blinding[rid]
            == {**e, "probabilities": [pytest.approx(q) for q in chance[e["round"] : number + 1]]}
            for rid, e in seen.items()
        ), "earlier records keep their round, and their chance grows with each round"
        assert [(e["round"], e["probabilities"]) for e in new.values()] == [(number, [chance[number]])] * len(new)
        assert all(chance[number - 1] <= uniform(42, e["task_id"]) < chance[number] for e in new.values())
        assert set(on_server(hosted, pushed)) == set(pushed.receipt.blinding)
        for record in on_server(hosted, pushed).values():
            if record["external_id"] in new:
                ann.respond(record["id"], "submitted", SCORES)
                bob.respond(record["id"], "submitted", SCORES)
        seen, receipt = dict(pushed.receipt.blinding), pushed.receipt
    assert {e["task_id"] for e in seen.values()} == set(tasks.column("task_id").to_pylist())
    assert sum(entry["drawn"] for entry in receipt.rounds) == 24

    finished = push(params, tasks=tasks, generations=generations, previous=receipt)
    assert finished.receipt == receipt and finished.created == 0
    last_round = receipt.rounds[-1]["drawn"]
    assert finished.rounds is not None and finished.rounds.line() == (
        f"round {receipt.current_round}: {last_round} of {last_round} records done; every task is published"
    )


def test_a_published_task_left_out_later_keeps_its_chances_up_to_date(hosted: RunningServer, tmp_path: Path) -> None:
    params = params_for(hosted.url, next(_names), MODELS, round_size=4)
    tasks = make_tasks(12, start=500)
    first = push(params, tasks=tasks, generations=make_generations(tasks, MODELS))
    (rater,) = raters(hosted, tmp_path, ["left-out-rater"])
    for record in on_server(hosted, first).values():
        rater.respond(record["id"], "submitted", SCORES)
    gone = next(iter(first.receipt.blinding))
    generations = make_generations(tasks, MODELS)
    generations = generations.filter(pc.invert(pc.equal(generations.column("task_id"), gone)))  # a model lost it

    second = push(params, tasks=tasks, generations=generations, previous=first.receipt)
    assert second.receipt.current_round == 2 and second.missing_answers == 1
    assert second.receipt.blinding[gone] == {
        **first.receipt.blinding[gone],
        "probabilities": [pytest.approx(1 / 3)] * 2,
    }, "still on the server and in round 1; not among round 2's tasks, its chance by then is the one it had"
    chance = 8 / 11  # the eleven others: round 2 x 4 of 11
    assert all(
        e["probabilities"][-1] == pytest.approx(chance) for rid, e in second.receipt.blinding.items() if rid != gone
    )


def annotate_in_rounds(
    server: RunningServer, params: Params, tasks: pa.Table, rater: Annotator, scores
) -> list[Pushed]:
    """push, rate every new record (`scores(i)`: alpha's and beta's score on the i-th), push again, ... until push
    publishes nothing more; every push's result."""
    generations = make_generations(tasks, MODELS)
    pushes = [push(params, tasks=tasks, generations=generations)]
    rated = 0
    while pushes[-1].created:
        for record in on_server(server, pushes[-1]).values():
            if not record["responses"]:
                wanted = dict(zip(("alpha", "beta"), scores(rated)))
                shown = [writer_of(shown_answer(record["fields"], p)) for p in (1, 2)]
                rater.respond(
                    record["id"], "submitted", {f"score_response_{p}": wanted[m] for p, m in enumerate(shown, 1)}
                )
                rated += 1
        pushes.append(push(params, tasks=tasks, generations=generations, previous=pushes[-1].receipt))
    return pushes


@pytest.mark.slow
def test_no_next_round_once_every_pair_is_decided_and_every_round_while_none_is(
    hosted: RunningServer, tmp_path: Path
) -> None:
    (rater,) = raters(hosted, tmp_path, ["stop-rater"])
    params = params_for(hosted.url, next(_names), MODELS, round_size=12)
    tasks = make_tasks(60, start=300)
    clear = annotate_in_rounds(hosted, params, tasks, rater, lambda i: (6 + i % 2, 1 + i % 3))
    stopped = clear[-1]
    number = stopped.receipt.current_round
    records = stopped.receipt.records
    assert stopped.rounds is not None and stopped.rounds.decided and number < 5 and records < 60
    assert stopped.line(output=Path("p.json")).startswith(
        f"round {number}: {stopped.rounds.records} of {stopped.rounds.records} records done; decided: stop annotating; "
    )
    again = push(params, tasks=tasks, generations=make_generations(tasks, MODELS), previous=stopped.receipt)
    assert again.receipt == stopped.receipt and again.created == 0 and again.rounds == stopped.rounds

    params = params_for(hosted.url, next(_names), MODELS, round_size=8)
    tasks = make_tasks(24, start=400)
    # per task: alpha - beta = -1, -1, +2, ...: no difference
    even = annotate_in_rounds(hosted, params, tasks, rater, lambda i: (3 + i % 3, 3 + (i + 1) % 3))
    assert even[-1].receipt.records == 24 and even[-1].rounds is not None and not even[-1].rounds.decided
    assert even[-1].rounds.line().endswith("records done; every task is published")


def test_active_rounds_draw_where_the_judge_is_unsure(hosted: RunningServer) -> None:
    tasks = make_tasks(40, start=100)
    ids = tasks.column("task_id").to_pylist()
    close, far, flipped = ids[:20], ids[20:30], ids[30:]
    gaps = dict.fromkeys(close, 0) | dict.fromkeys(far + flipped, 7)
    orders = [
        {"task_id": t, "model_a": "alpha", "model_b": "beta", "judge": "j", "a_first": "alpha", "b_first": "alpha"}
        for t in far
    ]
    orders += [
        {"task_id": t, "model_a": "alpha", "model_b": "beta", "judge": "j", "a_first": "alpha", "b_first": "beta"}
        for t in flipped
    ]
    pairwise = pa.Table.from_pylist(orders, schema=JUDGE_PAIRWISE.schema)
    params = params_for(hosted.url, next(_names), MODELS, round_size=10, select="active")
    generations = make_generations(tasks, MODELS)
    with pytest.raises(ConfigError, match=r"^annotation.select: active draws each round where the judge is least sure"):
        push(params, tasks=tasks, generations=generations)
    assert params.annotation.dataset not in datasets(hosted), "nothing was created"

    pushed = push(params, tasks=tasks, generations=generations, judgments=judged(tasks, gaps), judge_pairwise=pairwise)
    # unsure: scores equal (20 tasks), or the two orders disagree (10): 1; sure: 7 apart and the orders agree: 1/8
    total = 30 + 10 / 8
    unsure = 10 * ((1 - UNIFORM_SHARE) / total + UNIFORM_SHARE / 40)
    sure = 10 * ((1 - UNIFORM_SHARE) / 8 / total + UNIFORM_SHARE / 40)
    expected = dict.fromkeys(close + flipped, unsure) | dict.fromkeys(far, sure)
    assert math.isclose(sum(expected.values()), 10)
    entries = pushed.receipt.blinding
    assert entries and {rid: e["probabilities"][0] for rid, e in entries.items()} == pytest.approx(
        {rid: expected[rid] for rid in entries}
    )
    assert pushed.receipt.rounds == [
        {"round": 1, "tasks": 40, "expected": pytest.approx(10.0), "drawn": len(entries), "seed": 42}
    ]


def datasets(server: RunningServer) -> list[str]:
    found = httpx.get(f"{server.url}/api/v1/me/datasets", headers={"X-Argilla-Api-Key": server.api_key})
    return [d["name"] for d in found.json()["items"]]


def test_the_push_stage_in_rounds_reruns_to_the_same_receipt_and_says_what_it_waits_for(
    argilla_server: RunningServer, tmp_path: Path
) -> None:
    tasks = make_tasks(12, start=200)
    params = {
        "argilla": {"url": "local", "data_dir": str(argilla_server.data_dir), "port": argilla_server.server.port},
        "annotation": {
            "dataset": "rounds-stage",
            "guidelines": str(PROJECT_ROOT / "annotation/guidelines.md"),
            "round_size": 5,
        },
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
        "compare": MODELS,
    }
    Params.model_validate(params)
    folder = make_project(
        tmp_path / "p", params=params, inputs={"tasks": tasks, "generations": make_generations(tasks, MODELS)}
    )
    first = run_stage("push", folder)
    assert first.returncode == 0, first.stderr
    written = (folder / "data/push.json").read_bytes()
    drawn = json.loads(written)["rounds"][0]["drawn"]
    assert f"push: round 1 of at most 3: {drawn} records published; " in first.stdout
    before = owner_records(argilla_server.url, argilla_server.api_key, json.loads(written)["dataset_id"])

    again = run_stage("push", folder)
    assert again.returncode == 0, again.stderr
    assert (
        f"push: round 1: 0 of {drawn} records done; next round when all are; {drawn} records in "
        f"llm-feedback/rounds-stage at {argilla_server.url} (0 new; 0 updated; {drawn} unchanged)"
    ) in again.stdout
    assert (folder / "data/push.json").read_bytes() == written, "a rerun that changes nothing writes the same bytes"
    assert owner_records(argilla_server.url, argilla_server.api_key, json.loads(written)["dataset_id"]) == before
