"""Chat messages for every (task, model), and the model's own chat template rendered for raw-text backends.

Rendering a Jinja chat template once per row costs ~50 µs; for a single-turn prompt the template's output is almost
always `prefix + instruction + suffix`. We find that frame with two probe instructions, check it against the real
template on a sample of rows, and then build every prompt with one vectorised Arrow concatenation. Any mismatch
(a template that trims, escapes or inspects the content) falls back to rendering every row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_feedback.artifacts import MESSAGE, PROMPTS
from llm_feedback.errors import ConfigError
from llm_feedback.params import FormatParams, ModelSpec

PROBES = ("\x00llm-feedback probe A\x00", "  probe {{ b }} <|im_end|> </s>\n")
VERIFY_ROWS = 32
RENDER_BATCH = 256


@dataclass(frozen=True)
class Rendered:
    prompts: pa.Array
    fast_path: bool


@dataclass(frozen=True)
class Formatted:
    """The format stage's result: the prompts table, and how each model's prompts were rendered (None: messages
    only, for backends that apply the template themselves)."""

    prompts: pa.Table
    tasks: int
    rendering: dict[str, Rendered | None]

    def line(self, *, output: Path) -> str:
        how = ", ".join(
            f"{name}: {'messages only' if r is None else 'template (fast path)' if r.fast_path else 'template'}"
            for name, r in self.rendering.items()
        )
        return (
            f"{self.prompts.num_rows} prompts for {self.tasks} tasks x {len(self.rendering)} models -> {output} ({how})"
        )


def build_prompts(
    tasks: pa.Table, *, models: dict[str, ModelSpec], compare: Sequence[str], params: FormatParams
) -> Formatted:
    """One row per (model, task) in `compare` order."""
    instructions = tasks.column("instruction").combine_chunks()
    parts, rendering = [], {}
    for name in compare:
        spec = models[name]
        system = spec.system_prompt if spec.system_prompt is not None else params.system_prompt
        prompt: pa.Array = pa.nulls(len(instructions), pa.string())
        template_sha = pa.nulls(len(instructions), pa.string())
        rendered = None
        if spec.needs_prompt:
            tokenizer = load_tokenizer(name, spec)
            rendered = render_prompts(tokenizer, system, instructions)
            prompt = rendered.prompts
            template_sha = pa.array([chat_template_sha(tokenizer)] * len(instructions), pa.string())
        rendering[name] = rendered
        parts.append(
            pa.table(
                {
                    "task_id": tasks.column("task_id"),
                    "model": pa.array([name] * len(instructions), pa.string()),
                    "messages": chat_messages(system, instructions),
                    "prompt": prompt,
                    "template_sha": template_sha,
                },
                schema=PROMPTS.schema,
            )
        )
    return Formatted(pa.concat_tables(parts).combine_chunks(), tasks.num_rows, rendering)


def chat_messages(system: str | None, instructions: pa.Array) -> pa.Array:
    """[system?, user] message lists built from Arrow arrays, without a Python object per message."""
    n = len(instructions)
    per_row = 2 if system is not None else 1
    if system is None:
        roles = pa.array(["user"] * n, pa.string())
        contents = instructions
    else:
        roles = pa.array(["system", "user"] * n, pa.string())
        order = np.empty(2 * n, dtype=np.int64)
        order[0::2], order[1::2] = n, np.arange(n)
        contents = pa.concat_arrays([instructions.cast(pa.string()), pa.array([system], pa.string())]).take(
            pa.array(order)
        )
    structs = pa.StructArray.from_arrays([roles, contents.cast(pa.string())], fields=list(MESSAGE))
    offsets = pa.array(np.arange(0, per_row * n + 1, per_row, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs, type=pa.list_(MESSAGE))


def load_tokenizer(name: str, spec: ModelSpec) -> Any:
    """The model's tokenizer (hub id or folder), with an error that says which key to set when it cannot load."""
    from huggingface_hub import constants
    from transformers import AutoTokenizer

    source = spec.tokenizer or spec.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, token=os.environ.get("HF_TOKEN") or None)
    except Exception as e:  # noqa: BLE001 (transformers raises OSError, ValueError, HTTP and JSON errors alike)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set and it is not in the local cache"
        raise ConfigError(
            f"params.yaml: models.{name}: cannot load the tokenizer '{source}' ({reason}); "
            f"set models.{name}.tokenizer to a local folder or a reachable hub id"
        ) from None
    if not tokenizer.chat_template:
        raise ConfigError(
            f"params.yaml: models.{name}: tokenizer '{source}' has no chat template; "
            f"set models.{name}.tokenizer to the instruct model's tokenizer"
        )
    return tokenizer


def chat_template_sha(tokenizer: Any) -> str:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default", next(iter(template.values())))
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def render_prompts(tokenizer: Any, system: str | None, instructions: pa.Array) -> Rendered:
    """Every instruction through the chat template with the generation prompt appended."""
    frame = _template_frame(tokenizer, system)
    if frame is not None:
        prefix, suffix = frame
        fast = pc.binary_join_element_wise(prefix, instructions.cast(pa.string()), suffix, "")
        if _agrees_with_template(tokenizer, system, instructions, fast):
            return Rendered(fast, fast_path=True)
    texts: list[str] = []
    for start in range(0, len(instructions), RENDER_BATCH):
        chunk = instructions.slice(start, RENDER_BATCH).to_pylist()
        texts.extend(_render(tokenizer, [conversation(system, text) for text in chunk]))
    return Rendered(pa.array(texts, pa.string()), fast_path=False)


def conversation(system: str | None, instruction: str) -> list[dict[str, str]]:
    """One instruction as chat messages, as every chat API and chat template takes them."""
    user = {"role": "user", "content": instruction}
    return [{"role": "system", "content": system}, user] if system is not None else [user]


def _render(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[str]:
    return tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)


def _template_frame(tokenizer: Any, system: str | None) -> tuple[str, str] | None:
    frames = set()
    for probe, text in zip(PROBES, _render(tokenizer, [conversation(system, p) for p in PROBES])):
        if text.count(probe) != 1:
            return None
        prefix, suffix = text.split(probe)
        frames.add((prefix, suffix))
    return frames.pop() if len(frames) == 1 else None


def _agrees_with_template(tokenizer: Any, system: str | None, instructions: pa.Array, fast: pa.Array) -> bool:
    """Render a seeded sample of rows (and the longest one) for real and compare with the fast path."""
    n = len(instructions)
    if n == 0:
        return True
    rows = set(np.random.default_rng(0).choice(n, size=min(n, VERIFY_ROWS), replace=False).tolist())
    rows.add(int(pc.index(pc.utf8_length(instructions), pc.max(pc.utf8_length(instructions))).as_py()))
    picked = sorted(rows)
    expected = _render(tokenizer, [conversation(system, instructions[i].as_py()) for i in picked])
    return all(fast[i].as_py() == text for i, text in zip(picked, expected))
