"""Benchmark: templating 50k instructions with the project's `render_prompts` against a per-row loop.

The baseline is the reference notebook's way: one `tokenizer.apply_chat_template` call per instruction, collected
into a list. The candidate is what the `format` stage does per model: `render_prompts` (probe the template once,
then one Arrow concatenation) plus the `chat_messages` column.

Both run on the same seeded synthetic instructions (50 to 2,000 characters) with a tiny local ChatML tokenizer
(`llm_feedback.testing.tiny_models`; nothing touches the Hub). Each run is a fresh subprocess, so its memory is its
own. It reports:
- the wall time of the templating work only: not imports, pyarrow's one-time compute setup, tokenizer or data
  loading (compiling the chat template is part of the work, and both variants pay it); and prompts/s;
- the peak RSS above the RSS just before the work, and the absolute peak RSS. Peaks are the process's own VmHWM,
  reset just before the work: `ru_maxrss` would not do, as a child starts with its parent's peak (Linux carries it
  across fork and exec).
The parent checks that both variants produced identical prompts for every row (a SHA-256 over all of them) and that
the fast path was taken, then prints a table with the median over `--repeat` runs and the candidate/baseline ratios.

Run from the project root:

    .venv/bin/python bench/format.py [--rows 50000] [--repeat 3]

Everything it writes goes to a temporary directory outside the repository.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.synthetic
sys.dont_write_bytecode = True  # nothing written inside the repository, not even __pycache__
os.environ["HF_HUB_OFFLINE"] = "1"  # transformers is imported lazily, after this; children inherit it
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "PyTorch was not found" on every run

from bench.synthetic import TASKS  # noqa: E402
from llm_feedback.prompts import chat_messages, render_prompts  # noqa: E402  (after the settings above)

VARIANTS = ("baseline", "candidate")
INSTRUCTIONS_FILE = "instructions.arrow"
TOKENIZER_DIR = "tokenizer"
MIN_CHARS, MAX_CHARS = 50, 2_000
FILLER = (
    "the",
    "input",
    "may",
    "be",
    "empty",
    "and",
    "must",
    "handle",
    "such",
    "as",
    "return",
    "None",
    "when",
    "invalid;",
    "raise",
    "ValueError",
    "otherwise.",
    "Use",
    "type",
    "hints",
    "and",
    "a",
    "docstring.",
    "Example:",
    "`f([1, 2, 3])`",
    "{'a': 1}",
    "<tag>",
    "{{ x }}",
    "\n",
    "```python\ndef helper(x):\n    return x\n```",
    "tests",
    "should",
    "cover",
    "edge",
    "cases.",
)
UNICODE_TAIL = " Keep names like naïve, größe and 数据 intact 🙂."
UNICODE_EVERY = 20  # one row in 20 is non-ASCII: real instructions are mostly ASCII, but the UTF-8 path is exercised


def make_instructions(rows: int, seed: int) -> pa.Array:
    """Seeded, varied instructions: a task sentence plus filler, log-uniform lengths from 50 to 2,000 chars."""
    rng = random.Random(seed)
    texts = []
    for i in range(rows):
        length = round(math.exp(rng.uniform(math.log(MIN_CHARS), math.log(MAX_CHARS))))
        head = f"Write a Python function `f_{i}` that {rng.choice(TASKS)}."
        filler = " ".join(rng.choices(FILLER, k=length // 4 + 1))
        tail = UNICODE_TAIL if i % UNICODE_EVERY == 0 else ""
        texts.append(f"{head} {filler}"[: length - len(tail)] + tail)
    return pa.array(texts, pa.string())


def prepare(folder: Path, rows: int, seed: int) -> None:
    """Write the instructions (Arrow IPC) and the tiny ChatML tokenizer that every child run loads."""
    from llm_feedback.testing.tiny_models import build_tokenizer

    table = pa.table({"instruction": make_instructions(rows, seed)})
    with pa.OSFile(str(folder / INSTRUCTIONS_FILE), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    build_tokenizer(folder / TOKENIZER_DIR)


def load_inputs(folder: Path) -> tuple[Any, pa.Array]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder / TOKENIZER_DIR)
    with pa.OSFile(str(folder / INSTRUCTIONS_FILE), "rb") as source:
        instructions = pa.ipc.open_file(source).read_all().column("instruction").combine_chunks()
    return tokenizer, instructions


def baseline(tokenizer: Any, instructions: pa.Array) -> tuple[list[str], None]:
    """The reference notebook: one chat-template call per row."""
    prompts = []
    for text in instructions.to_pylist():
        messages = [{"role": "user", "content": text}]
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompts, None


def candidate(tokenizer: Any, instructions: pa.Array) -> tuple[pa.Array, bool]:
    """What the format stage does per model: the messages column and the rendered prompts."""
    rendered = render_prompts(tokenizer, None, instructions)
    messages = chat_messages(None, instructions)
    assert len(messages) == len(rendered.prompts) == len(instructions)
    return rendered.prompts, rendered.fast_path


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so the peak is the work's, not the setup's."""
    Path("/proc/self/clear_refs").write_text("5")


def digest(prompts: Iterable[str]) -> str:
    """SHA-256 over every prompt, length-prefixed so that row boundaries count."""
    h = hashlib.sha256()
    for text in prompts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def settle() -> None:
    """Pay one-time costs outside the measurement, as imports are, and return freed memory to the OS.

    pyarrow loads its compute library on the first compute call (~0.15 s, ~35 MiB), and Arrow's pool keeps freed
    buffers (here from reading the instructions) that the candidate would otherwise reuse without a rise in RSS.
    """
    pc.utf8_length(pa.array([""]))
    gc.collect()
    pa.default_memory_pool().release_unused()


def run_variant(variant: str, folder: Path) -> dict[str, Any]:
    """One measured run in this (fresh) process."""
    tokenizer, instructions = load_inputs(folder)
    work = baseline if variant == "baseline" else candidate
    settle()
    reset_peak_rss()
    rss_before = status_mib("VmRSS")
    start = time.perf_counter()
    prompts, fast_path = work(tokenizer, instructions)
    seconds = time.perf_counter() - start
    peak = status_mib("VmHWM")
    texts = prompts if isinstance(prompts, list) else prompts.to_pylist()
    return {
        "variant": variant,
        "rows": len(instructions),
        "seconds": seconds,
        "prompts_per_s": len(instructions) / seconds,
        "peak_delta_mib": peak - rss_before,
        "peak_mib": peak,
        "fast_path": fast_path,
        "digest": digest(texts),
    }


def spawn(variant: str, folder: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--data", str(folder)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every measurement over the repeats of one variant."""
    keys = ("seconds", "prompts_per_s", "peak_delta_mib", "peak_mib")
    return {**runs[0], **{key: statistics.median(run[key] for run in runs) for key in keys}}


def report(results: dict[str, dict[str, Any]], repeat: int) -> None:
    header = f"{'variant':<10} {'rows':>7} {'seconds':>8} {'prompts/s':>11} {'peak Δ MiB':>11} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<10} {r['rows']:>7} {r['seconds']:>8.3f} {r['prompts_per_s']:>11,.0f}"
            f" {r['peak_delta_mib']:>11.1f} {r['peak_mib']:>9.1f}"
        )
    base, cand = results["baseline"], results["candidate"]
    print(f"\n(median of {repeat} fresh process(es) per variant; time and memory cover the templating work only)")
    print(f"throughput ratio candidate/baseline: {cand['prompts_per_s'] / base['prompts_per_s']:.1f}x")
    print(f"peak memory Δ ratio candidate/baseline: {cand['peak_delta_mib'] / base['peak_delta_mib']:.2f}")
    print(f"absolute peak RSS ratio candidate/baseline: {cand['peak_mib'] / base['peak_mib']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="instructions to template (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per variant; medians are reported")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic instructions (default 0)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.data)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-format-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.rows, args.seed)
        runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.repeat):
            for variant in VARIANTS:
                runs[variant].append(spawn(variant, folder))
    results = {variant: summarise(variant_runs) for variant, variant_runs in runs.items()}

    digests = {run["digest"] for variant_runs in runs.values() for run in variant_runs}
    assert len(digests) == 1, "baseline and candidate prompts differ"
    assert all(run["fast_path"] for run in runs["candidate"]), "render_prompts fell back to per-row rendering"
    print(f"{args.rows} instructions, {MIN_CHARS}-{MAX_CHARS} chars, seed {args.seed}, tiny ChatML tokenizer")
    print(f"identical prompts on all rows: yes (sha256 {digests.pop()[:16]}); candidate fast path: yes\n")
    report(results, args.repeat)


if __name__ == "__main__":
    main()
