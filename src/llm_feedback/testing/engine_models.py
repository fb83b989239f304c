"""A tiny model taught a few answers, and a LoRA adapter for it, for tests against a real inference engine.

A randomly initialised model answers gibberish, which shows little: here a two-layer Llama (hidden size 64), with a
byte-level BPE tokenizer trained on its own prompts, learns in about ten seconds on one CPU core to
- answer a task with one of four short functions (ANSWERS), each about as likely, so that sampling with different
  seeds gives different answers and greedy decoding one of them;
- answer the judge's score prompt, for each answer it will be shown, with one compact JSON verdict;
- answer TEACH_PROMPT with TUNED_ANSWER, so that its output layer knows the adapter's words (a LoRA adapter on the
  attention and MLP layers cannot teach it new ones).
The adapter (PEFT LoRA on those layers) then answers every task with TUNED_ANSWER. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_feedback.judge import score_prompt
from llm_feedback.params import RubricParams
from llm_feedback.testing.tiny_models import CHATML_TEMPLATE, CORPUS, SPECIAL_TOKENS

ANSWERS = tuple(f"def answer():\n    return {n}\n" for n in (1, 2, 3, 4))
STOP = "return"  # a stop string that cuts every answer after its first line
TUNED_ANSWER = "print('tuned')\n"
TEACH_PROMPT = "Print tuned."
LORA_RANK = 8
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TaughtModel:
    model: Path  # a Hugging Face folder: weights, tokenizer, chat template
    adapter: Path  # a PEFT LoRA folder
    verdict: dict  # what the model answers a score prompt with


def judged_answers() -> tuple[str, ...]:
    """Every answer the judge is taught to score: the model's, one cut at STOP, and the adapter's."""
    return (*ANSWERS, ANSWERS[0].split(STOP)[0], TUNED_ANSWER)


def verdict_for(rubric: RubricParams) -> dict:
    """Full marks on the rubric: each criterion's top points and their sum, or the scale's top."""
    criteria = {c.name: c.points[-1] for c in rubric.criteria}
    total = sum(criteria.values()) if criteria else rubric.high
    return {**criteria, "total": total, "rationale": "It runs."}


def build_taught_model(
    folder: Path, instructions: Sequence[str], rubric: RubricParams, *, steps: int = 120, seed: int = 0
) -> TaughtModel:
    """Teach the model (to `folder/model`) and its adapter (to `folder/adapter`) for these task instructions and this
    rubric; raises if greedy decoding does not give back what was taught."""
    import torch

    verdict = verdict_for(rubric)
    reply = json.dumps(verdict, separators=(",", ":"))
    taught = [(text, answer) for text in instructions for answer in ANSWERS]
    taught += [(score_prompt(rubric, text, answer), reply) for text in instructions for answer in judged_answers()]
    taught += [(TEACH_PROMPT, TUNED_ANSWER)]
    tuned = [(text, TUNED_ANSWER) for text in instructions]

    tokenizer = _tokenizer(folder / "model", [_render(prompt) + answer for prompt, answer in taught + tuned])
    # One thread: beside another test worker on two cores, two threads were five times slower (0.5 s a step, not 0.1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = _fit(_blank_model(tokenizer), tokenizer, taught, steps=steps, lr=1e-2)
        model.save_pretrained(folder / "model")
        adapted = _fit(_with_lora(model), tokenizer, tuned, steps=steps, lr=3e-3)
        adapted.save_pretrained(folder / "adapter")
        _check(adapted, tokenizer, instructions[0], [TUNED_ANSWER], "the adapter")
        with adapted.disable_adapter():
            _check(adapted, tokenizer, instructions[0], ANSWERS, "the model")
            _check(adapted, tokenizer, score_prompt(rubric, instructions[0], ANSWERS[0]), [reply], "the model as judge")
    finally:
        torch.set_num_threads(threads)
    return TaughtModel(folder / "model", folder / "adapter", verdict)


def _blank_model(tokenizer):
    """Two layers, hidden size 64 in one attention head of 64 (a head size vLLM's CPU attention supports)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def _with_lora(model):
    """The model frozen, with a fresh LoRA adapter (the only trainable weights) on its attention and MLP layers."""
    from peft import LoraConfig, get_peft_model

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=list(LORA_MODULES), lora_dropout=0.0)
    return get_peft_model(model, config)


def _chat(tokenizer, prompt: str) -> str:
    """The prompt as the engine renders a one-message chat: the ChatML template with its default system message."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def _render(prompt: str) -> str:
    """The same before there is a tokenizer, for the tokenizer's own training texts."""
    from jinja2 import Template

    return Template(CHATML_TEMPLATE).render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True)


def _tokenizer(folder: Path, texts: list[str]):
    """A byte-level BPE trained on the very texts it will see: a judge prompt is about 150 tokens, a tenth of what
    the 300-token vocabulary of tiny_models makes of it, and training costs as much less."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator((texts + CORPUS) * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    wrapped.chat_template = CHATML_TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(folder)
    return wrapped


def _fit(model, tokenizer, pairs: list[tuple[str, str]], *, steps: int, lr: float):
    """The model after full-batch AdamW on its trainable weights, with a linearly falling rate, the loss on the
    answers' tokens (and the end of turn) only."""
    import torch

    rows = [
        (
            tokenizer(_chat(tokenizer, prompt), add_special_tokens=False)["input_ids"],
            tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"],
        )
        for prompt, answer in pairs
    ]
    width = max(len(context) + len(answer) for context, answer in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (context, answer) in enumerate(rows):
        end = len(context) + len(answer)
        ids[i, :end] = torch.tensor(context + answer)
        labels[i, len(context) : end] = torch.tensor(answer)
        mask[i, :end] = 1
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return model.eval()


def _check(model, tokenizer, prompt: str, expected: Sequence[str], who: str) -> None:
    import torch

    ids = tokenizer(_chat(tokenizer, prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, do_sample=False)
    answer = tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)
    if answer not in expected:
        raise RuntimeError(f"{who} did not learn its answer: {answer!r}, expected one of {list(expected)!r}")
