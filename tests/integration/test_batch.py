"""`llm.batch.ask`, the one request path of the generate and judge stages: requests keyed by id in, answers out, each
request sent with its own sampling settings and JSON shape, against the fake server and a tiny local model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from llm_feedback.llm.base import Request
from llm_feedback.llm.batch import Batch, ask
from llm_feedback.llm.factory import backend_for
from llm_feedback.params import GenerateParams, GenerationParams, ModelSpec
from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer, canned_answer
from llm_feedback.testing.tiny_models import build_model

SHAPE = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}


def run(requests: dict, models: dict[str, ModelSpec], cache: Path, label: str = "test", **settings) -> Batch:
    run_settings = GenerateParams(backoff_initial_s=0.01, **settings)
    return ask(
        requests,
        models=models,
        settings=run_settings,
        cache_path=cache,
        label=label,
        make_backend=partial(backend_for, run=run_settings),
    )


def test_each_request_goes_out_with_its_own_sampling_and_schema(
    tmp_path: Path, server: FakeLLMServer, tiny_tokenizer: Path, hub_reachable: None
) -> None:
    models = {"tgi": ModelSpec(backend="hf", endpoint_url=server.url, tokenizer=str(tiny_tokenizer))}
    requests = {
        ("verdict", 1): Request(
            model="tgi", messages=[], prompt="first", json_schema=SHAPE, generation=GenerationParams(max_new_tokens=300)
        ),
        ("free", 2): Request(
            model="tgi",
            messages=[],
            prompt="second",
            generation=GenerationParams(max_new_tokens=3, temperature=0.5, seed=7),
        ),
    }
    batch = run(requests, models, tmp_path / "cache.sqlite")
    bodies = {r["body"]["inputs"]: r["body"]["parameters"] for r in server.requests}
    assert bodies["first"]["grammar"] == {"type": "json", "value": SHAPE} and bodies["first"]["max_new_tokens"] == 300
    assert bodies["first"]["do_sample"] is False and "temperature" not in bodies["first"]
    assert bodies["second"].get("grammar") is None and bodies["second"]["max_new_tokens"] == 3
    assert (bodies["second"]["temperature"], bodies["second"]["seed"]) == (0.5, 7)
    assert list(batch.answers) == [("verdict", 1), ("free", 2)]
    assert batch.answers[("verdict", 1)].text == canned_answer("tgi", "first")
    assert batch.answers[("free", 2)].completion_tokens == 3


def test_answers_are_cached_per_request_and_progress_is_labelled_by_the_stage(
    tmp_path: Path, server: FakeLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fail_marker = {"REFUSED": "400"}
    models = {"a": ModelSpec(backend="openai", model="served", base_url=f"{server.url}/v1")}
    requests = {
        name: Request(
            model="a", messages=[{"role": "user", "content": name}], prompt=None, generation=GenerationParams()
        )
        for name in ("one", "two", "REFUSED")
    }
    first = run(requests, models, tmp_path / "cache.sqlite", label="judge")
    assert "judge: a: 3/3 (100%), 1 failed" in capsys.readouterr().err
    assert first.answers["REFUSED"].text is None and first.answers["REFUSED"].error.startswith("HTTP 400: ")
    assert [s.line().split(";")[0].split(", ")[:2] for s in first.summaries] == [["a: 2 ok", "1 failed"]]

    again = run(requests, models, tmp_path / "cache.sqlite", label="judge")
    assert server.count(CHAT_PATH, fault=None) == 4  # only the failed one is asked again
    assert [again.answers[k].cached for k in requests] == [True, True, False]
    assert {k: a.text for k, a in again.answers.items()} == {k: a.text for k, a in first.answers.items()}
    assert again.summaries[0].cached == 2


@pytest.mark.slow
def test_a_local_batch_that_mixes_sampling_settings_gives_each_request_its_own(
    tmp_path: Path, tiny_tokenizer: Path
) -> None:
    model = build_model(tmp_path / "model", tiny_tokenizer)
    models = {"local": ModelSpec(backend="transformers", model=str(model))}

    def request(prompt: str, tokens: int) -> Request:
        return Request(model="local", messages=[], prompt=prompt, generation=GenerationParams(max_new_tokens=tokens))

    prompts = ["<|im_start|>user\nWrite a function.<|im_end|>\n", "<|im_start|>user\ndef add(a, b):<|im_end|>\n"]
    together = run({0: request(prompts[0], 12), 1: request(prompts[1], 3)}, models, tmp_path / "a.sqlite", batch_size=2)
    alone = [
        run({0: request(p, n)}, models, tmp_path / f"alone-{n}.sqlite", batch_size=1).answers[0]
        for p, n in zip(prompts, (12, 3))
    ]
    assert [together.answers[i].completion_tokens for i in (0, 1)] == [a.completion_tokens for a in alone]
    assert [together.answers[i].text for i in (0, 1)] == [a.text for a in alone]
    assert alone[0].completion_tokens > 3 and alone[1].completion_tokens <= 3
