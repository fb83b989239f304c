from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from transformers import AutoTokenizer

from llm_feedback.errors import ConfigError
from llm_feedback.params import FormatParams, ModelSpec
from llm_feedback.prompts import build_prompts, chat_messages, load_tokenizer, render_prompts
from llm_feedback.testing.tiny_models import CHATML_TEMPLATE, build_tokenizer

INSTRUCTIONS = pa.array(
    ["Write `f`.", "  leading and trailing spaces  ", "{{ jinja }} <|im_end|> and é", "x" * 5000], pa.string()
)
TRIMMING_TEMPLATE = CHATML_TEMPLATE.replace("{{ message['content'] }}", "{{ message['content'] | trim }}")
BRANCHING_TEMPLATE = CHATML_TEMPLATE.replace(
    "{{ message['content'] }}", "{% if 'x' * 100 in message['content'] %}[long]{% endif %}{{ message['content'] }}"
)


def per_row(tokenizer, system: str | None) -> list[str]:
    """The reference notebook's way: one apply_chat_template call per row."""
    head = [{"role": "system", "content": system}] if system is not None else []
    return [
        tokenizer.apply_chat_template(
            head + [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in INSTRUCTIONS.to_pylist()
    ]


def test_messages_with_and_without_system() -> None:
    assert chat_messages(None, INSTRUCTIONS[:2]).to_pylist() == [
        [{"role": "user", "content": "Write `f`."}],
        [{"role": "user", "content": "  leading and trailing spaces  "}],
    ]
    assert chat_messages("Be brief.", INSTRUCTIONS[:2]).to_pylist()[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  leading and trailing spaces  "},
    ]


@pytest.mark.parametrize("system", [None, "You write Python."])
def test_fast_path_equals_the_template(tiny_tokenizer: Path, system: str | None) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    rendered = render_prompts(tokenizer, system, INSTRUCTIONS)
    assert rendered.fast_path
    assert rendered.prompts.to_pylist() == per_row(tokenizer, system)


@pytest.mark.parametrize("template", [TRIMMING_TEMPLATE, BRANCHING_TEMPLATE])
def test_templates_that_touch_the_content_fall_back_to_rendering_each_row(tmp_path: Path, template: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tokenizer(tmp_path / "tok", chat_template=template))
    rendered = render_prompts(tokenizer, None, INSTRUCTIONS)
    assert not rendered.fast_path
    assert rendered.prompts.to_pylist() == per_row(tokenizer, None)


def test_build_prompts_renders_only_for_raw_text_backends(tiny_tokenizer: Path, tmp_path: Path) -> None:
    other = build_tokenizer(tmp_path / "other", chat_template=TRIMMING_TEMPLATE)
    models = {
        "local": ModelSpec(backend="transformers", model=str(tiny_tokenizer), system_prompt="Local system."),
        "endpoint": ModelSpec(backend="hf", endpoint_url="http://127.0.0.1:1", tokenizer=str(other)),
        "api": ModelSpec(backend="openai", model="m", base_url="http://127.0.0.1:1/v1"),
    }
    tasks = pa.table({"task_id": ["a", "b", "c", "d"], "instruction": INSTRUCTIONS})
    formatted = build_prompts(
        tasks, models=models, compare=["api", "local", "endpoint"], params=FormatParams(system_prompt="Global.")
    )
    rows, rendering = formatted.prompts.to_pylist(), formatted.rendering
    assert [r["model"] for r in rows] == ["api"] * 4 + ["local"] * 4 + ["endpoint"] * 4
    api, local, endpoint = rows[0], rows[4], rows[8]
    assert api["prompt"] is None and api["template_sha"] is None
    assert api["messages"][0] == {"role": "system", "content": "Global."}
    assert local["messages"][0] == {"role": "system", "content": "Local system."}
    assert local["prompt"].startswith("<|im_start|>system\nLocal system.<|im_end|>")
    assert local["template_sha"] != endpoint["template_sha"]
    assert rendering["api"] is None and rendering["local"].fast_path and not rendering["endpoint"].fast_path
    assert formatted.line(output=Path("data/prompts.parquet")) == (
        "12 prompts for 4 tasks x 3 models -> data/prompts.parquet "
        "(api: messages only, local: template (fast path), endpoint: template)"
    )


def test_unloadable_tokenizer_names_the_model_and_what_to_set(tmp_path: Path) -> None:
    spec = ModelSpec(backend="transformers", model="some-org/not-cached-model")
    with pytest.raises(ConfigError) as error:
        load_tokenizer("mine", spec)
    message = str(error.value)
    assert "models.mine: cannot load the tokenizer 'some-org/not-cached-model'" in message
    assert "HF_HUB_OFFLINE is set" in message and "set models.mine.tokenizer" in message


def test_tokenizer_without_chat_template_is_refused(tmp_path: Path) -> None:
    folder = build_tokenizer(tmp_path / "base", chat_template=None)
    with pytest.raises(ConfigError, match=r"models\.base: tokenizer '.*' has no chat template"):
        load_tokenizer("base", ModelSpec(backend="transformers", model=str(folder)))
