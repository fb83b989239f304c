"""Benchmark: the sandbox's cost per run with bubblewrap against the old path without it and a bare `python -c`, and
its pool's throughput against one run at a time.

Programs: the shipped sample's reference solutions with their tasks' tests (44 tasks, cycled to `--programs`, 200 by
default), so each run does real work: define the function, run 3-15 asserts.

Measured, all in this run (the three sequential ones taking turns job by job), each against its target:
- `bwrap, one at a time`: `Sandbox.run`, sequentially, in bubblewrap's namespaces (the default);
- `no bwrap, one at a time`: the same jobs through the old path (a plain child process: `Sandbox(bwrap=None)`,
  which warns that it contains less);
- `bare python -c`: the same code and tests run by `python -I -c` in a plain subprocess, no sandbox, sequentially:
  the floor a sandboxed run is compared with;
- `bwrap, pool`: `Sandbox.run_all` with the default pool (one worker per core), in rounds of 4 jobs per worker that
  take turns with the same rounds run one at a time.
Targets: bubblewrap adds at most 25 ms per run over the old path, a sandboxed run costs at most 60 ms more than a bare
one, and the pool runs at least 1.5x as many programs per second as one at a time on 2 cores.

Every sandboxed run must pass (the solutions are correct), which the benchmark checks. Run from the project root:

    .venv/bin/python bench/execute.py [--programs 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from llm_feedback.execution import split_statements
from llm_feedback.params import ExecuteParams
from llm_feedback.sandbox import Job, Sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.dont_write_bytecode = True


def programs(count: int) -> list[Job]:
    tasks = yaml.safe_load((ROOT / "data/sample/tasks.yaml").read_text())
    solutions = yaml.safe_load((ROOT / "data/sample/solutions.yaml").read_text())
    jobs = [Job(t["name"], solutions[t["name"]], split_statements(t["tests"])) for t in tasks]
    return [jobs[i % len(jobs)] for i in range(count)]


def interleaved(variants: dict, jobs: list) -> dict[str, float]:
    """Seconds per job (or round of jobs) for each variant, taking turns, so a change in the machine's load between them
    falls on all alike; every sandboxed run must pass."""
    spent = dict.fromkeys(variants, 0.0)
    for job in jobs:
        for name, run in variants.items():
            began = time.perf_counter()
            result = run(job)
            spent[name] += time.perf_counter() - began
            assert result is None or result.status == "pass", result
    return {name: seconds / len(jobs) for name, seconds in spent.items()}


def pool(sandbox: Sandbox, chunk: list[Job]) -> None:
    assert all(r.status == "pass" for _, r in sandbox.run_all(chunk))


def one(sandbox: Sandbox, chunk: list[Job]) -> None:
    assert all(sandbox.run(job).status == "pass" for job in chunk)


def bare(python: str, job: Job) -> None:
    source = job.code + "\n" + "\n".join(job.tests) + "\n"
    subprocess.run([python, "-I", "-c", source], check=True, capture_output=True, env={"PATH": "/usr/bin:/bin"})


def line(name: str, seconds: float, note: str = "") -> None:
    print(f"  {name:24} {1 / seconds:7.1f} runs/s  ({1000 * seconds:6.1f} ms per run){note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=200)
    args = parser.parse_args()
    jobs = programs(args.programs)
    began = time.perf_counter()
    sandbox = Sandbox(ExecuteParams())
    probe_ms = 1000 * (time.perf_counter() - began)
    old = Sandbox(ExecuteParams(), bwrap=None)
    assert sandbox.contained and not old.contained
    sandbox.run(jobs[0]), old.run(jobs[0])  # warm the page cache, untimed

    each = interleaved({"bwrap": sandbox.run, "old": old.run, "bare": lambda job: bare(sandbox.python, job)}, jobs)
    single, unwrapped, floor = each["bwrap"], each["old"], each["bare"]
    rounds = [jobs[i : i + 4 * sandbox.workers] for i in range(0, len(jobs), 4 * sandbox.workers)]
    turns = interleaved({"pool": lambda chunk: pool(sandbox, chunk), "one": lambda chunk: one(sandbox, chunk)}, rounds)
    pooled, speedup = turns["pool"] * len(rounds) / len(jobs), turns["one"] / turns["pool"]

    n, cores = len(jobs), os.cpu_count()
    print(
        f"{n} programs (sample solutions with their tests), {sandbox.workers} workers, interpreter {sandbox.python}, "
        f"load average {os.getloadavg()[0]:.1f} on {cores} cores"
    )
    print(f"  setting up the sandbox (bubblewrap's probe run included): {probe_ms:.0f} ms, once per stage")
    line("bwrap, one at a time", single)
    line("no bwrap, one at a time", unwrapped, "  (baseline: the old path)")
    line("bare python -c", floor, "  (baseline: no sandbox)")
    line("bwrap, pool", pooled)
    added, total = 1000 * (single - unwrapped), 1000 * (single - floor)
    print(
        f"  bubblewrap's cost per run: {added:+.1f} ms over the old path (target <= 25 ms: "
        f"{'met' if added <= 25 else 'MISSED'})"
    )
    print(
        f"  sandbox overhead per run: {total:+.1f} ms over a bare run, {single / floor:.2f}x "
        f"(target <= 60 ms: {'met' if total <= 60 else 'MISSED'})"
    )
    print(
        f"  pool vs one at a time: {speedup:.2f}x on {cores} cores (target >= 1.5x: "
        f"{'met' if speedup >= 1.5 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
