"""The judge's own requests: the JSON shape of each kind of answer, greedy sampling at judge.max_new_tokens whatever
the judge model's own settings, and cache keys that earlier judgments are still found by."""

from __future__ import annotations

from pathlib import Path

from llm_feedback.judge import PAIRWISE_SCHEMA, judge_requests, pairwise_prompt, score_prompt, verdict_schema
from llm_feedback.llm.batch import request_hash
from llm_feedback.params import GenerationOverrides, GenerationParams, JudgeParams, ModelSpec, RubricParams

SCORE = ("score", "t1", "a")
PAIR = ("pair", "t1", "a", "b")
PROMPTS = {
    SCORE: score_prompt(RubricParams(), "Write f.", "def f(): pass"),
    PAIR: pairwise_prompt(RubricParams(), "Write f.", "x", "y"),
}


def spec(**extra: object) -> ModelSpec:
    return ModelSpec(**{"backend": "openai", "model": "judge", "base_url": "http://127.0.0.1:8000/v1", **extra})


def test_each_kind_of_request_asks_for_its_own_shape_and_none_without_json_mode() -> None:
    requests = judge_requests(PROMPTS, judge="j", spec=spec(), settings=JudgeParams(), rubric=RubricParams())
    assert (requests[SCORE].json_schema, requests[PAIR].json_schema) == (
        verdict_schema(RubricParams()),
        PAIRWISE_SCHEMA,
    )
    plain = judge_requests(
        PROMPTS, judge="j", spec=spec(), settings=JudgeParams(json_mode=False), rubric=RubricParams()
    )
    assert (plain[SCORE].json_schema, plain[PAIR].json_schema) == (None, None)


def test_the_judge_models_own_generation_settings_do_not_reach_its_verdicts() -> None:
    own = GenerationOverrides(temperature=0.7, max_new_tokens=64, top_p=0.9, seed=5, stop=["}"])
    requests = judge_requests(
        PROMPTS, judge="j", spec=spec(generation=own), settings=JudgeParams(max_new_tokens=300), rubric=RubricParams()
    )
    greedy = GenerationParams(max_new_tokens=300, temperature=0.0, top_p=1.0, seed=0, stop=[])
    assert [r.generation for r in requests.values()] == [greedy, greedy]
    assert all(r.model == "j" and r.prompt is None for r in requests.values())


def test_a_raw_text_judge_gets_its_chat_template_and_system_prompt(tiny_tokenizer: Path) -> None:
    tgi = ModelSpec(
        backend="hf", endpoint_url="http://127.0.0.1:1", tokenizer=str(tiny_tokenizer), system_prompt="Be fair."
    )
    request = judge_requests(PROMPTS, judge="j", spec=tgi, settings=JudgeParams(), rubric=RubricParams())[SCORE]
    assert request.messages == [{"role": "system", "content": "Be fair."}, {"role": "user", "content": PROMPTS[SCORE]}]
    chatml = f"<|im_start|>system\nBe fair.<|im_end|>\n<|im_start|>user\n{PROMPTS[SCORE]}<|im_end|>\n"
    assert request.prompt == chatml + "<|im_start|>assistant\n"


def test_score_requests_keep_their_cache_keys() -> None:
    """Earlier judgments (the cache, or the artifact after `dvc pull`) are found by these: a change asks again."""
    request = judge_requests(PROMPTS, judge="j", spec=spec(), settings=JudgeParams(), rubric=RubricParams())[SCORE]
    assert request_hash(spec(), request) == "63c204b344e5101fa90fe5ab3913c65507eae1ec9366d0816a6443fb94b8c234"
