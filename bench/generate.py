"""Benchmark: requests/s of the generate stage's request path against the ideal and the reference notebook's loop.

The server is the tests' `FakeLLMServer` (`llm_feedback.testing.fake_llm_server`: real aiohttp on 127.0.0.1,
OpenAI-compatible `POST /v1/chat/completions`) with 100 ms of latency per answer. It runs in this (parent) process;
every measured client runs in a fresh subprocess, so the client never shares its CPU or GIL with the server (2 cores
are enough).

Variants, all asking the same distinct instructions with the same sampling settings:
- `sequential`: the reference notebook's way: a plain `for` loop calling a synchronous client once per request
  (`huggingface_hub.InferenceClient(base_url=...).chat_completion`). Its ideal is 1 / latency = 10 requests/s, so it
  sends fewer requests (`--sequential-requests`, default 64) to keep the run short; requests/s is what is compared.
- `runner-C` for C in 1, 8, 64: the project's own path, as the generate stage drives it: `run_requests` over an
  `OpenAIBackend` with `Limits(concurrency=C)`, no requests-per-minute limit. C=1 also sends fewer requests
  (`--sequential-requests`); the others send `--requests` (default 512).
- `ceiling-64`: a reference, not a candidate: bare `aiohttp` posting the same JSON at concurrency 64, with no SDK and
  no runner. It shows what this server and machine allow, so a shortfall of `runner-64` can be told apart from a
  limit of the test harness.

Each child sends one untimed warm-up request first (lazy imports, the first connection), then measures the wall time
from the first request to the last completion, the process's CPU time over that window (`getrusage`), and the
per-request latency (p50, p95). The parent also takes its own CPU time over each child's run: that is the server's,
as the parent does nothing else meanwhile. The parent checks that the server answered every request exactly once,
with the expected text, and saw the expected concurrency; it takes the median over `--repeat` fresh children per
variant and prints requests/s, the ratio to the ideal (concurrency / latency) and the ratio to the sequential loop.
The issue's targets at concurrency 64, at least 0.85 of ideal and at least 40x the sequential loop, end the output as
PASS/FAIL lines (exit status 1 on a FAIL).

Run from the project root (about 80 s):

    .venv/bin/python bench/generate.py [--requests 512] [--sequential-requests 64] [--repeat 3]

It writes nothing: no files, and no bytecode inside the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.synthetic
sys.dont_write_bytecode = True  # nothing written inside the repository, not even __pycache__

from bench.synthetic import TASKS  # noqa: E402
from llm_feedback.llm.base import Request  # noqa: E402  (after the settings above)
from llm_feedback.params import GenerationParams  # noqa: E402
from llm_feedback.testing.fake_llm_server import CHAT_PATH  # noqa: E402

LATENCY_S = 0.1
CONCURRENCIES = (1, 8, 64)
CEILING = f"ceiling-{max(CONCURRENCIES)}"
VARIANTS = ("sequential", *(f"runner-{c}" for c in CONCURRENCIES), CEILING)
TARGET_CONCURRENCY = 64
TARGET_OF_IDEAL = 0.85
TARGET_VS_SEQUENTIAL = 40.0
MODEL = "m"
TIMEOUT_S = 30.0
GENERATION = GenerationParams(max_new_tokens=256)  # the server's canned answers are ~20 words: never truncated


def instructions(count: int) -> list[str]:
    """Distinct instructions, so no layer anywhere could answer one from another."""
    return [f"Write a Python function `f_{i}` that {TASKS[i % len(TASKS)]}." for i in range(count)]


def messages(instruction: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": instruction}]


def request(instruction: str) -> Request:
    return Request(model=MODEL, messages=messages(instruction), prompt=None, generation=GENERATION)


def concurrency_of(variant: str) -> int:
    return 1 if variant == "sequential" else int(variant.rpartition("-")[2])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000


def measurement(count: int, seconds: float, cpu: float, latencies: list[float], wrong: int) -> dict[str, Any]:
    p50, p95 = percentiles_ms(latencies)
    return {
        "requests": count,
        "seconds": seconds,
        "requests_per_s": count / seconds,
        "cpu_ms_per_request": cpu / count * 1000,
        "p50_ms": p50,
        "p95_ms": p95,
        "wrong": wrong,
    }


def run_sequential(url: str, count: int) -> dict[str, Any]:
    """The reference notebook: one blocking call per instruction, collected into a list."""
    from huggingface_hub import InferenceClient

    from llm_feedback.testing.fake_llm_server import canned_answer

    client = InferenceClient(base_url=url + "/v1", timeout=TIMEOUT_S)
    gen = GENERATION

    def ask(instruction: str) -> str:
        response = client.chat_completion(
            messages(instruction),
            model=MODEL,
            max_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=gen.seed,
        )
        return response.choices[0].message.content or ""

    ask("warm-up")
    texts: list[str] = []
    latencies: list[float] = []
    todo = instructions(count)
    cpu_before, start = cpu_seconds(), time.perf_counter()
    for instruction in todo:
        sent = time.perf_counter()
        texts.append(ask(instruction))
        latencies.append(time.perf_counter() - sent)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    wrong = sum(text != canned_answer(MODEL, instruction) for text, instruction in zip(texts, todo))
    return measurement(count, seconds, cpu, latencies, wrong)


async def run_runner(url: str, count: int, concurrency: int) -> dict[str, Any]:
    """What the generate stage does for one model: `run_requests` over an `OpenAIBackend`."""
    from llm_feedback.llm.openai_backend import OpenAIBackend
    from llm_feedback.llm.runner import Limits, Outcome, run_requests
    from llm_feedback.params import ModelSpec
    from llm_feedback.testing.fake_llm_server import canned_answer

    spec = ModelSpec(backend="openai", model=MODEL, base_url=url + "/v1")
    backend = OpenAIBackend(spec, timeout_s=TIMEOUT_S)
    limits = Limits(
        concurrency=concurrency,
        requests_per_minute=None,
        timeout_s=TIMEOUT_S,
        max_attempts=3,
        backoff_initial_s=0.1,
        backoff_max_s=1.0,
    )
    todo = instructions(count)
    requests = [request(instruction) for instruction in todo]
    outcomes: dict[int, Outcome] = {}

    def on_done(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome

    try:
        await backend.complete(request("warm-up"))
        cpu_before, start = cpu_seconds(), time.perf_counter()
        await run_requests(backend, requests, limits, on_done)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    finally:
        await backend.aclose()
    failed = [o.error for o in outcomes.values() if o.completion is None]
    if failed or len(outcomes) != count:
        raise SystemExit(f"{len(failed)} of {count} requests failed, e.g. {failed[:1]}")
    retried = sum(o.attempts > 1 for o in outcomes.values())
    texts = [outcomes[i].completion.text for i in range(count)]  # type: ignore[union-attr]
    wrong = sum(text != canned_answer(MODEL, instruction) for text, instruction in zip(texts, todo))
    latencies = [o.latency_s for o in outcomes.values() if o.latency_s is not None]
    return {**measurement(count, seconds, cpu, latencies, wrong), "retried": retried}


async def run_ceiling(url: str, count: int, concurrency: int) -> dict[str, Any]:
    """The same requests from bare aiohttp: the most this server and machine allow a Python client."""
    import aiohttp

    from llm_feedback.testing.fake_llm_server import canned_answer

    gen = GENERATION
    slots = asyncio.Semaphore(concurrency)
    todo = instructions(count)
    texts: list[str] = [""] * count
    latencies: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:

        async def ask(instruction: str) -> str:
            body = {
                "model": MODEL,
                "messages": messages(instruction),
                "max_tokens": gen.max_new_tokens,
                "temperature": gen.temperature,
                "top_p": gen.top_p,
                "seed": gen.seed,
            }
            async with session.post(url + CHAT_PATH, json=body) as response:
                response.raise_for_status()
                return (await response.json())["choices"][0]["message"]["content"]

        async def one(index: int) -> None:
            async with slots:
                sent = time.perf_counter()
                texts[index] = await ask(todo[index])
                latencies.append(time.perf_counter() - sent)

        await ask("warm-up")
        cpu_before, start = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    wrong = sum(text != canned_answer(MODEL, instruction) for text, instruction in zip(texts, todo))
    return measurement(count, seconds, cpu, latencies, wrong)


def run_variant(variant: str, url: str, count: int) -> dict[str, Any]:
    """One measured run in this (fresh) process."""
    if variant == "sequential":
        result = run_sequential(url, count)
    elif variant == CEILING:
        result = asyncio.run(run_ceiling(url, count, concurrency_of(variant)))
    else:
        result = asyncio.run(run_runner(url, count, concurrency_of(variant)))
    return {"variant": variant, **result}


def spawn(variant: str, url: str, count: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--variant",
        variant,
        "--url",
        url,
        "--count",
        str(count),
    ]
    # huggingface_hub refuses every URL, even loopback, when offline.
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(server: Any, variant: str, count: int) -> dict[str, Any]:
    """One fresh child, plus what the server saw: every request answered once, and the concurrency reached."""
    server.reset()
    server_cpu = cpu_seconds()
    result = spawn(variant, server.url, count)
    server_cpu = cpu_seconds() - server_cpu
    answered = server.count(CHAT_PATH)
    assert result.get("retried", 0) == 0, f"{variant}: {result['retried']} requests needed a retry"
    assert answered == count + 1, f"{variant}: the server answered {answered} requests, expected {count} + 1 warm-up"
    assert result["wrong"] == 0, f"{variant}: {result['wrong']} answers differ from the server's canned answer"
    server_ms = server_cpu / (count + 1) * 1000
    return {**result, "server_cpu_ms_per_request": server_ms, "peak_in_flight": server.max_in_flight}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every measurement over the repeats of one variant."""
    keys = ("seconds", "requests_per_s", "cpu_ms_per_request", "server_cpu_ms_per_request", "p50_ms", "p95_ms")
    return {
        **runs[0],
        **{key: statistics.median(run[key] for run in runs) for key in keys},
        "peak_in_flight": max(run["peak_in_flight"] for run in runs),
    }


def report(results: dict[str, dict[str, Any]], repeat: int) -> bool:
    """Print the table and the target checks; True if both targets are met."""
    sequential = results["sequential"]["requests_per_s"]
    header = (
        f"{'variant':<11} {'conc':>4} {'requests':>8} {'seconds':>8} {'req/s':>8} {'ideal':>6} {'of ideal':>8}"
        f" {'x seq':>6} {'p50 ms':>7} {'p95 ms':>7} {'client CPU ms/req':>17} {'server CPU ms/req':>17}"
        f" {'peak in flight':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        concurrency = concurrency_of(name)
        ideal = concurrency / LATENCY_S
        print(
            f"{name:<11} {concurrency:>4} {r['requests']:>8} {r['seconds']:>8.2f} {r['requests_per_s']:>8.1f}"
            f" {ideal:>6.0f} {r['requests_per_s'] / ideal:>8.3f} {r['requests_per_s'] / sequential:>6.1f}"
            f" {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['cpu_ms_per_request']:>17.2f}"
            f" {r['server_cpu_ms_per_request']:>17.2f} {r['peak_in_flight']:>14}"
        )
    latency_ms = LATENCY_S * 1000
    print(
        f"\n(median of {repeat} fresh client process(es) per variant; ideal = concurrency / {latency_ms:.0f} ms;"
        f" x seq = requests/s over the sequential loop's; CPU = user + system time per request, the client's in its"
        f" own process, the server's in this one; {CEILING} = bare aiohttp, no SDK, no runner: the harness's limit)"
    )
    target = results[f"runner-{TARGET_CONCURRENCY}"]["requests_per_s"]
    of_ideal = target / (TARGET_CONCURRENCY / LATENCY_S)
    vs_sequential = target / sequential
    checks = [
        (
            f"runner-{TARGET_CONCURRENCY} of ideal: {of_ideal:.3f} (target >= {TARGET_OF_IDEAL})",
            of_ideal >= TARGET_OF_IDEAL,
        ),
        (
            (
                f"runner-{TARGET_CONCURRENCY} over the sequential loop: {vs_sequential:.1f}x"
                f" (target >= {TARGET_VS_SEQUENTIAL:.0f}x)"
            ),
            vs_sequential >= TARGET_VS_SEQUENTIAL,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return all(ok for _, ok in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512, help="requests per run at concurrency 8 and 64")
    parser.add_argument(
        "--sequential-requests", type=int, default=64, help="requests per run of the sequential loop and runner-1"
    )
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per variant; medians are reported")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.url, args.count)))
        return

    from llm_feedback.testing.fake_llm_server import FakeLLMServer

    counts = {v: args.sequential_requests if concurrency_of(v) == 1 else args.requests for v in VARIANTS}
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    with FakeLLMServer(latency_s=LATENCY_S) as server:
        for _ in range(args.repeat):
            for variant in VARIANTS:
                runs[variant].append(measure(server, variant, counts[variant]))
    results = {variant: summarise(variant_runs) for variant, variant_runs in runs.items()}

    print(
        f"FakeLLMServer at {LATENCY_S * 1000:.0f} ms latency in the parent process, each client in its own process;"
        f" {args.requests} distinct requests per run at concurrency 8 and 64, {args.sequential_requests} for the"
        f" sequential loop and concurrency 1"
    )
    print("every request answered once, with the expected text; none failed\n")
    if not report(results, args.repeat):
        sys.exit(1)


if __name__ == "__main__":
    main()
