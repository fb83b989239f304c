"""Benchmark: the sandbox's throughput with its pool against one run at a time, and its cost per run against a bare
`python -c`.

Programs: the shipped sample's reference solutions with their tasks' tests (44 tasks, cycled to `--programs`, 200 by
default), so each run does real work: define the function, run 3-15 asserts.

Measured, all in this run:
- `pool`: `Sandbox.run_all` with the default pool (one worker per core);
- `one at a time`: the same jobs through `Sandbox.run`, sequentially;
- `bare python -c`: the same code and tests run by `python -I -c` in a plain subprocess, no sandbox, sequentially:
  the floor a sandboxed run is compared with (its overhead = sandboxed time per run - bare time per run).

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True

import yaml  # noqa: E402

from llm_feedback.execution import split_statements  # noqa: E402
from llm_feedback.sandbox import Job, Limits, Sandbox  # noqa: E402


def programs(count: int) -> list[Job]:
    tasks = yaml.safe_load((ROOT / "data/sample/tasks.yaml").read_text())
    solutions = yaml.safe_load((ROOT / "data/sample/solutions.yaml").read_text())
    jobs = [Job(t["name"], solutions[t["name"]], split_statements(t["tests"])) for t in tasks]
    return [jobs[i % len(jobs)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=200)
    args = parser.parse_args()
    jobs = programs(args.programs)
    sandbox = Sandbox(Limits())
    sandbox.run(jobs[0])  # warm the page cache, untimed

    began = time.perf_counter()
    pooled = [result for _, result in sandbox.run_all(jobs)]
    pool_s = time.perf_counter() - began

    began = time.perf_counter()
    single = [sandbox.run(job) for job in jobs]
    single_s = time.perf_counter() - began
    assert all(r.status == "pass" for r in pooled + single), [r for r in pooled + single if r.status != "pass"][:1]

    began = time.perf_counter()
    for job in jobs:
        source = job.code + "\n" + "\n".join(job.tests) + "\n"
        subprocess.run([sandbox.python, "-I", "-c", source], check=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin"})
    bare_s = time.perf_counter() - began

    n = len(jobs)
    print(f"{n} programs (sample solutions with their tests), {sandbox.workers} workers, interpreter {sandbox.python}")
    print(f"  pool:            {n / pool_s:7.1f} runs/s  ({1000 * pool_s / n:6.1f} ms per run)")
    print(f"  one at a time:   {n / single_s:7.1f} runs/s  ({1000 * single_s / n:6.1f} ms per run)")
    print(f"  bare python -c:  {n / bare_s:7.1f} runs/s  ({1000 * bare_s / n:6.1f} ms per run)")
    print(f"  pool vs one at a time: {single_s / pool_s:.2f}x on {os.cpu_count()} cores")
    print(f"  sandbox overhead per run: {1000 * (single_s - bare_s) / n:+.1f} ms ({single_s / bare_s:.2f}x a bare run)")


if __name__ == "__main__":
    main()
