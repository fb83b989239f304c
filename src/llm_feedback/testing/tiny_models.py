"""Tiny local models for tests and benchmarks: nothing here touches the Hub."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# ChatML, the format of Qwen2.5 and SmolLM2, with a default system message like Qwen's.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Write a Python function that returns the sum of a list of integers.",
    "def add(a, b):\n    return a + b\n",
    "```python\nimport math\nprint(math.sqrt(16))\n```",
    "Implement a class with a method that parses a CSV line and validates each field.",
]


def build_tokenizer(folder: Path, chat_template: str | None = CHATML_TEMPLATE, vocab_size: int = 300) -> Path:
    """Train a byte-level BPE tokenizer on a few lines and save it as a transformers tokenizer folder."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 10, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(folder)
    return folder


def build_model(folder: Path, tokenizer_folder: Path, seed: int = 0, *, hidden_size: int = 32, layers: int = 2) -> Path:
    """A randomly initialised Llama (two layers unless told) beside a copy of the tokenizer: a complete local model
    folder. A wider one (`hidden_size`) learns a handful of examples in a few steps, for the training tests."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    for item in tokenizer_folder.iterdir():
        shutil.copy2(item, folder / item.name)
    return folder
