"""The judge stage against the local test LLM server: well-formed, malformed and refused verdicts, JSON mode on the
wire, a rerun that asks nothing, and pairwise mode cancelling a judge that always prefers the first answer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.judge import PAIRWISE_SCHEMA, verdict_schema
from llm_feedback.params import RubricParams
from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer
from llm_feedback.testing.generations import answered
from tests.project import make_project, run_stage

pytestmark = pytest.mark.slow
TASK_IDS = [f"task-{i}" for i in range(4)]
FULL_MARKS = {"comments_and_docstrings": 2, "test_example": 2, "runs_correctly": 3, "total": 7, "rationale": "Works."}
# huggingface_hub refuses even loopback URLs when offline; the fake server is all these tests reach.
ONLINE = {"HF_HUB_OFFLINE": "0"}
ZERO = {"comments_and_docstrings": 0, "test_example": 0, "runs_correctly": 0, "total": 0, "rationale": "Broken."}


def judge_answer(prefer_first: bool):
    def answer(model: str, prompt: str) -> str:
        if "<answer_A>" in prompt:  # pairwise
            if prefer_first:
                return '{"better": "A", "rationale": "The first one."}'
            first = prompt.split("<answer_A>")[1].split("</answer_A>")[0]
            return json.dumps({"better": "A" if "GOOD" in first else "B", "rationale": "Runs."})
        shown = prompt.split("<answer>")[1]
        if "GOOD" in shown:
            return json.dumps(FULL_MARKS)
        if "BAD-task-0" in shown:
            return "I'm sorry, but I can't help with evaluating this."
        if "BAD-task-1" in shown:
            return '{"comments_and_docstrings": 1, "test_example":'
        return f"```json\n{json.dumps(ZERO)}\n```"

    return answer


def project(
    folder: Path, server: FakeLLMServer, generate: dict | None = None, judge_model: dict | None = None, **judge
) -> Path:
    """A folder with tasks, two models' answers and params.yaml; `judge_model` replaces the judge's model entry."""
    models = {
        name: {"backend": "openai", "model": name, "base_url": f"{server.url}/v1"}
        for name in ("good", "bad", "judge-llm")
    }
    params = {
        "models": {**models, "judge-llm": judge_model or models["judge-llm"]},
        "compare": ["good", "bad"],
        "judge": {
            "enabled": True,
            "model": "judge-llm",
            **judge,
        },
        "generate": {"backoff_initial_s": 0.01, **(generate or {})},
    }
    n = len(TASK_IDS)
    tasks = pa.table(
        {
            "task_id": TASK_IDS,
            "instruction": [f"Write f for {t}" for t in TASK_IDS],
            "source": ["s"] * n,
            "source_row": list(range(n)),
        }
    )
    generations = answered(
        {
            (t, m): f"```python\n# {m.upper()}-{t}\ndef f():\n    return 1\n```"
            for t in TASK_IDS
            for m in ("good", "bad")
        }
    )
    return make_project(folder, params=params, inputs={"tasks": tasks, "generations": generations})


def test_verdicts_are_parsed_or_recorded_as_errors_and_a_rerun_asks_nothing(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    server.answer = judge_answer(prefer_first=False)
    folder = project(tmp_path, server)
    first = run_stage("judge", folder, env=ONLINE)
    assert first.returncode == 0, first.stderr
    assert "judge: judge-llm scored 6 of 8 answers (2 unusable verdicts) -> data/judgments.parquet" in first.stdout
    assert "judge: judge-llm: 8/8 (100%), 0 failed" in first.stderr and "generate" not in first.stderr  # progress
    assert server.count(CHAT_PATH) == 8
    bodies = [r["body"] for r in server.requests if r["path"] == CHAT_PATH]
    assert all(b["response_format"] == {"type": "json_object"} and b["temperature"] == 0 for b in bodies)
    rows = {(r["task_id"], r["model"]): r for r in pq.read_table(folder / "data/judgments.parquet").to_pylist()}
    assert all(rows[(t, "good")]["score"] == 7 and rows[(t, "good")]["rationale"] == "Works." for t in TASK_IDS)
    assert rows[("task-0", "bad")]["score"] is None and "no JSON object" in rows[("task-0", "bad")]["error"]
    assert rows[("task-1", "bad")]["score"] is None and "no JSON object" in rows[("task-1", "bad")]["error"]
    assert rows[("task-2", "bad")]["score"] == 0 and rows[("task-3", "bad")]["error"] is None
    assert all(r["judge"] == "judge-llm" for r in rows.values())

    before = (folder / "data/judgments.parquet").read_bytes()
    (folder / "data/cache/judgments.sqlite").unlink()  # the artifact alone is enough to ask nothing again
    again = run_stage("judge", folder, env=ONLINE)
    assert again.returncode == 0, again.stderr
    assert server.count(CHAT_PATH) == 8, "nothing is asked twice"
    assert (folder / "data/judgments.parquet").read_bytes() == before


def test_malformed_replies_are_unusable_verdicts_and_the_stage_goes_on(tmp_path: Path, server: FakeLLMServer) -> None:
    server.answer = judge_answer(prefer_first=False)
    server.fail_marker = {"BAD-task-2": "list_content", "BAD-task-3": "empty_content", "GOOD-task-3": "text_usage"}
    folder = project(tmp_path, server, generate={"max_error_rate": 0.5})
    for _ in range(2):  # the rerun asks for the three again, and nothing crashes
        result = run_stage("judge", folder, env=ONLINE)
        assert result.returncode == 0, result.stderr
        assert "judge: judge-llm scored 3 of 8 answers (5 unusable verdicts)" in result.stdout
        rows = {(r["task_id"], r["model"]): r for r in pq.read_table(folder / "data/judgments.parquet").to_pylist()}
        assert "choices.0.message.content: Input should be a valid string" in rows[("task-2", "bad")]["error"]
        assert rows[("task-3", "bad")]["error"] == "empty answer (finish_reason: stop) (after 1 attempt)"
        assert "usage.prompt_tokens: Input should be a valid integer" in rows[("task-3", "good")]["error"]
        assert all(
            rows[k]["score"] is None and rows[k]["answer"] is None
            for k in [("task-2", "bad"), ("task-3", "bad"), ("task-3", "good")]
        )
        assert [rows[(t, "good")]["score"] for t in TASK_IDS[:3]] == [7, 7, 7]
        assert "Traceback" not in result.stderr
    assert server.count(CHAT_PATH, fault=None) == 8 + 3


def test_pairwise_asks_both_orders_and_a_first_position_bias_cancels(tmp_path: Path, server: FakeLLMServer) -> None:
    server.answer = judge_answer(prefer_first=True)
    biased = run_stage("judge", project(tmp_path / "biased", server, pairwise=True), env=ONLINE)
    assert biased.returncode == 0, biased.stderr
    assert "4 pairs compared in both orders" in biased.stdout
    pairs = pq.read_table(tmp_path / "biased/data/judge_pairwise.parquet").to_pylist()
    assert [(p["a_first"], p["b_first"], p["verdict"]) for p in pairs] == [("good", "bad", "tie")] * 4

    server.answer = judge_answer(prefer_first=False)
    fair = run_stage("judge", project(tmp_path / "fair", server, pairwise=True), env=ONLINE)
    assert fair.returncode == 0, fair.stderr
    pairs = pq.read_table(tmp_path / "fair/data/judge_pairwise.parquet").to_pylist()
    assert [(p["a_first"], p["b_first"], p["verdict"]) for p in pairs] == [("good", "good", "good")] * 4


def test_pairwise_requests_ask_for_the_pairwise_shape_and_score_requests_for_the_verdict(
    tmp_path: Path, server: FakeLLMServer, tiny_tokenizer: Path
) -> None:
    """On a TGI endpoint the schema is a grammar the judge cannot leave: the wrong one forces the wrong JSON."""
    tgi = {"backend": "hf", "endpoint_url": server.url, "tokenizer": str(tiny_tokenizer)}
    result = run_stage("judge", project(tmp_path, server, judge_model=tgi, pairwise=True), env=ONLINE)
    assert result.returncode == 0, result.stderr
    bodies = [r["body"] for r in server.requests if r["path"] == "/"]
    pairwise = [b for b in bodies if "<answer_A>" in b["inputs"]]
    scores = [b for b in bodies if "<answer_A>" not in b["inputs"]]
    assert (len(pairwise), len(scores)) == (8, 8)
    assert [b["parameters"]["grammar"] for b in pairwise] == [{"type": "json", "value": PAIRWISE_SCHEMA}] * 8
    assert [b["parameters"]["grammar"] for b in scores] == [
        {"type": "json", "value": verdict_schema(RubricParams())}
    ] * 8


def test_the_judge_samples_greedily_whatever_its_models_own_generation_settings(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    server.answer = judge_answer(prefer_first=False)
    judge_model = {
        "backend": "openai",
        "model": "judge-llm",
        "base_url": f"{server.url}/v1",
        "generation": {"temperature": 0.7, "max_new_tokens": 64, "top_p": 0.9, "seed": 5, "stop": ["}"]},
    }
    result = run_stage(
        "judge", project(tmp_path, server, judge_model=judge_model, pairwise=True, max_new_tokens=300), env=ONLINE
    )
    assert result.returncode == 0, result.stderr
    bodies = [r["body"] for r in server.requests if r["path"] == CHAT_PATH]
    assert len(bodies) == 16
    sampling = [(b["temperature"], b["max_tokens"], b["top_p"], b["seed"], b["stop"]) for b in bodies]
    assert sampling == [(0, 300, 1.0, 0, None)] * 16  # judge.max_new_tokens, greedy, no stop sequence
    assert "judge: judge-llm scored 6 of 8 answers" in result.stdout  # no stop sequence cut a verdict short


def test_switched_off_it_writes_empty_artifacts(tmp_path: Path, server: FakeLLMServer) -> None:
    folder = project(tmp_path, server, enabled=False)
    result = run_stage("judge", folder, env=ONLINE)
    assert result.returncode == 0 and "disabled (judge.enabled: false)" in result.stdout
    assert pq.read_table(folder / "data/judgments.parquet").num_rows == 0 and server.count(CHAT_PATH) == 0
