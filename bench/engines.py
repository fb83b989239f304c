"""Benchmark: the engines behind generate, and replicas of one model, all in one run.

1. Engines. The same tiny model (a Llama built here, `--hidden` wide, `--layers` deep, with a locally trained
   tokenizer: no Hub) answers the same `--requests` distinct instructions, greedy, up to `--max-new-tokens` tokens,
   through the generate stage's own request path (`llm.batch.ask`, a fresh request cache each time):
   - `transformers`: the local backend, in this process, batches of `--batch-size` (generate.batch_size), the model
     loaded by the timed batch as in every generate run (from the OS's file cache: a fraction of a second);
   - `vllm`: vLLM's CPU build in its own venv (`llm_feedback.testing.engine_server`), through the `openai` backend at
     `--concurrency` requests in flight. Its start-up (about a minute) is not timed; one warm-up request first.
   Figures: requests/s and completion tokens/s (the tokens each backend reports), over the wall time of the batch.
   The baseline is the transformers backend; there is no target (the issue asks for the figures).
2. Replicas. The tests' fake LLM server at 100 ms per answer: 1 replica against 3 (`base_url` as a list), at
   generate.concurrency 8 per replica, `--replica-requests` requests per replica. Scaling efficiency =
   (requests/s with 3) / (3 x requests/s with 1); the target is at least 0.9. The servers run in a child process, so
   the client alone has this process's CPU and GIL.

Run from the project root (about 3 minutes, plus vLLM's venv on first use):

    .venv/bin/python bench/engines.py [--requests 64] [--max-new-tokens 64] [--skip-vllm]

Exit status 1 when a target is missed. It writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.synthetic, bench.figures
sys.dont_write_bytecode = True  # nothing written inside the repository, not even __pycache__

from bench.figures import Figure, exit_on_targets, print_figures  # noqa: E402
from bench.synthetic import TASKS  # noqa: E402
from llm_feedback.llm.base import Backend, Request  # noqa: E402
from llm_feedback.llm.batch import ask  # noqa: E402
from llm_feedback.params import GenerateParams, GenerationParams, ModelSpec  # noqa: E402

LATENCY_S = 0.1
PER_REPLICA = 8
REPLICAS = 3
TARGET_EFFICIENCY = 0.9


def instructions(count: int, tag: str) -> list[str]:
    """Distinct instructions (`tag` keeps one run's from another's), so nothing could answer one from another."""
    return [f"Write a Python function `f_{tag}_{i}` that {TASKS[i % len(TASKS)]}." for i in range(count)]


def requests_for(
    model: str, texts: list[str], generation: GenerationParams, *, template: Callable[[list], str] | None = None
) -> dict[int, Request]:
    """As format writes them: the chat messages, and for a local model the prompt its chat template makes."""
    chats = [[{"role": "user", "content": t}] for t in texts]
    return {
        i: Request(model=model, messages=chat, prompt=template(chat) if template else None, generation=generation)
        for i, chat in enumerate(chats)
    }


def timed_ask(
    *, name: str, spec: ModelSpec, settings: GenerateParams, texts: list[str], generation: GenerationParams,
    scratch: Path, make_backend: Callable[[str, ModelSpec], Backend], template: Callable[[list], str] | None = None,
) -> dict[str, float]:  # fmt: skip
    """The generate stage's path for one model's batch: requests/s and completion tokens/s over its wall time."""
    cache = scratch / f"cache-{name}-{time.monotonic_ns()}.sqlite"
    started = time.perf_counter()
    batch = ask(
        requests_for(name, texts, generation, template=template),
        models={name: spec},
        settings=settings,
        cache_path=cache,
        make_backend=make_backend,
        label=f"bench {name}",
    )
    seconds = time.perf_counter() - started
    failed = [a.error for a in batch.answers.values() if a.error]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} of {len(texts)} requests failed, e.g. {failed[0]}")
    tokens = sum(a.completion_tokens or 0 for a in batch.answers.values())
    return {"requests_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds, "tokens": tokens}


def build_model(folder: Path, *, hidden: int, layers: int) -> Path:
    from llm_feedback.testing.tiny_models import build_model as build
    from llm_feedback.testing.tiny_models import build_tokenizer

    tokenizer = build_tokenizer(folder / "tokenizer")
    return build(folder / "model", tokenizer, hidden_size=hidden, layers=layers)


def local_engine(model: Path, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """The transformers backend as generate makes it; a one-request batch first reads the files into the OS cache,
    so the timed batch's model load (a new backend's, as in every generate run) costs a fraction of a second."""
    from functools import partial

    from transformers import AutoTokenizer

    from llm_feedback.llm.factory import backend_for

    tokenizer = AutoTokenizer.from_pretrained(model)

    def template(chat: list) -> str:
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    spec = ModelSpec(backend="transformers", model=str(model), device="cpu")
    generation = GenerationParams(max_new_tokens=args.max_new_tokens)
    settings = GenerateParams(batch_size=args.batch_size)
    factory = partial(backend_for, run=settings)
    timed_ask(name="warm", spec=spec, settings=settings, texts=["warm-up"], generation=generation,
              scratch=scratch, make_backend=factory, template=template)  # fmt: skip
    return timed_ask(
        name="local", spec=spec, settings=settings, texts=instructions(args.requests, "t"), generation=generation,
        scratch=scratch, make_backend=factory, template=template,
    )  # fmt: skip


def served_engine(model: Path, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """vLLM serving the same folder, through the openai backend; one untimed warm-up request."""
    from functools import partial

    from llm_feedback.llm.factory import backend_for
    from llm_feedback.testing.engine_server import start

    generation = GenerationParams(max_new_tokens=args.max_new_tokens)
    settings = GenerateParams(concurrency=args.concurrency)
    with start(model, served_name="tiny", dtype="float32", log_file=scratch / "vllm.log") as engine:
        spec = ModelSpec(backend="openai", model="tiny", base_url=engine.base_url)
        factory = partial(backend_for, run=settings)
        timed_ask(name="warm", spec=spec, settings=settings, texts=["warm-up"], generation=generation,
                  scratch=scratch, make_backend=factory)  # fmt: skip
        return timed_ask(
            name="vllm", spec=spec, settings=settings, texts=instructions(args.requests, "v"), generation=generation,
            scratch=scratch, make_backend=factory,
        )  # fmt: skip


def replicas(urls: list[str], count: int, scratch: Path) -> dict[str, float]:
    from functools import partial

    from llm_feedback.llm.factory import backend_for

    settings = GenerateParams(concurrency=PER_REPLICA)  # per replica: a model's limit is this x len(base_url)
    spec = ModelSpec(backend="openai", model="m", base_url=urls if len(urls) > 1 else urls[0])
    return timed_ask(
        name=f"replicas-{len(urls)}", spec=spec, settings=settings, texts=instructions(count, f"r{len(urls)}"),
        generation=GenerationParams(max_new_tokens=256), scratch=scratch,
        make_backend=partial(backend_for, run=settings),
    )  # fmt: skip


def serve_fakes(count: int) -> None:
    """Child mode: `count` fake servers at LATENCY_S; prints their URLs as JSON, serves until stdin closes, then
    prints how many answers each gave."""
    from llm_feedback.testing.fake_llm_server import CHAT_PATH, FakeLLMServer

    servers = [FakeLLMServer(latency_s=LATENCY_S).start() for _ in range(count)]
    print(json.dumps([s.url + "/v1" for s in servers]), flush=True)
    sys.stdin.read()
    print(json.dumps([s.count(CHAT_PATH) for s in servers]), flush=True)
    for server in servers:
        server.stop()


def with_fakes(count: int, body: Callable[[list[str]], dict[str, float]]) -> tuple[dict[str, float], list[int]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-fakes", str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        urls = json.loads(child.stdout.readline())
        result = body(urls)
    finally:
        child.stdin.close()
    answered = json.loads(child.stdout.readline())
    child.wait(timeout=30)
    return result, answered


def figures(engines: Mapping[str, dict[str, float]], one: dict[str, float], three: dict[str, float]) -> list[Figure]:
    base = engines["transformers"]
    rows = []
    for name, m in engines.items():
        rows.append(Figure(f"{name}: requests/s", f"{m['requests_per_s']:.2f}", "-",
                           f"transformers {base['requests_per_s']:.2f}", None))  # fmt: skip
        rows.append(Figure(f"{name}: completion tokens/s", f"{m['tokens_per_s']:,.0f}", "-",
                           f"transformers {base['tokens_per_s']:,.0f}", None))  # fmt: skip
    efficiency = three["requests_per_s"] / (REPLICAS * one["requests_per_s"])
    rows.append(Figure("fake server, 1 replica: requests/s", f"{one['requests_per_s']:.1f}", "-",
                       f"ideal {PER_REPLICA / LATENCY_S:.0f}", None))  # fmt: skip
    rows.append(Figure(f"fake server, {REPLICAS} replicas: requests/s", f"{three['requests_per_s']:.1f}", "-",
                       f"ideal {REPLICAS * PER_REPLICA / LATENCY_S:.0f}", None))  # fmt: skip
    rows.append(Figure("replica scaling efficiency", f"{efficiency:.3f}", f">= {TARGET_EFFICIENCY}",
                       f"1 replica {one['requests_per_s']:.1f}/s", efficiency >= TARGET_EFFICIENCY))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="instructions per engine")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="the transformers backend's batch")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight to vLLM")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--replica-requests", type=int, default=400, help="per replica")
    parser.add_argument("--skip-vllm", action="store_true", help="where vLLM's CPU build cannot run")
    parser.add_argument("--serve-fakes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        serve_fakes(args.serve_fakes)
        return
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
        scratch = Path(folder)
        model = build_model(scratch, hidden=args.hidden, layers=args.layers)
        engines = {"transformers": local_engine(model, args, scratch)}
        if not args.skip_vllm:
            engines["vllm"] = served_engine(model, args, scratch)
        one, answered_one = with_fakes(1, lambda urls: replicas(urls, args.replica_requests, scratch))
        three, answered = with_fakes(REPLICAS, lambda urls: replicas(urls, REPLICAS * args.replica_requests, scratch))
    print(f"\nmodel: Llama {args.layers} layers x {args.hidden} wide, {args.requests} requests of up to "
          f"{args.max_new_tokens} new tokens; replicas answered {answered_one} and {answered}\n")  # fmt: skip
    rows = figures(engines, one, three)
    print_figures(rows, label_width=38, target_width=8, baseline_width=26)
    exit_on_targets(rows)


if __name__ == "__main__":
    main()
