"""execute: each answer's Python code, run with its task's tests in the sandbox.

Tests come from the task when it has them: a column of asserts (the shipped sample's `tests`), or the asserts that
end a reference solution (the bigcode rows' `response`). Otherwise the answer's own asserts are its tests.

The code is read from the answer as annotators see it (`presentation.normalise`, which push shows), so what runs is
exactly what they see in `python` fences: a fence tagged `python`, `py`, `python3` or `py3` in any case, or an
untagged one whose content looks like Python. An untagged fence that does not (a shell command, program output) is
shown as text and not run, and a REPL transcript (`>>>` prompts) is shown as Python but not run.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from tqdm.auto import tqdm

from llm_feedback.artifacts import EXECUTIONS
from llm_feedback.errors import InputError
from llm_feedback.presentation import normalise, python_blocks
from llm_feedback.sandbox import Job, Limits, Result, Sandbox

STATUSES = ("pass", "fail", "error", "timeout", "no_code")


def extract_code(response: str) -> str | None:
    """The Python in an answer: the `python` fences of the text annotators see, in order (see the module
    docstring), or the whole answer when it is bare Python with a definition; None when there is no code."""
    blocks = python_blocks(normalise(response))
    if blocks:
        return "\n\n".join(block.rstrip() for block in blocks) + "\n"
    try:
        tree = ast.parse(response)
    except SyntaxError:
        return None
    if any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body):
        return response
    return None


def split_statements(source: str) -> tuple[str, ...]:
    """Top-level statements as separate snippets, so each test passes or fails on its own."""
    return tuple(_segment(source, node) for node in ast.parse(source).body)


def _segment(source: str, node: ast.stmt) -> str:
    """A statement's whole source, decorators included (ast's own segment starts at `def`)."""
    lines = source.splitlines()
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return "\n".join(lines[first - 1 : node.end_lineno])


def reference_asserts(reference: str) -> tuple[str, ...]:
    """The top-level asserts of a reference solution (the bigcode rows end theirs with tests)."""
    code = extract_code(reference) or reference
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ()
    return tuple(_segment(code, node) for node in tree.body if isinstance(node, ast.Assert))


def task_tests(
    tasks: pa.Table, *, tests_column: str | None, reference_column: str | None, where: str
) -> dict[str, tuple[str, ...]]:
    """Each task's tests by id, from `tests_column` when the table has it, else from `reference_column`'s asserts;
    `where` names the table in errors."""
    ids = tasks.column("task_id").to_pylist()
    if tests_column and tests_column in tasks.column_names:
        found = {}
        for row, (task_id, source) in enumerate(zip(ids, tasks.column(tests_column).to_pylist())):
            if source and source.strip():
                try:
                    found[task_id] = split_statements(source)
                except SyntaxError as e:
                    raise InputError(
                        f"{where}: row {row} (task {task_id}): column '{tests_column}' is not valid Python "
                        f"(line {e.lineno}: {e.msg})"
                    ) from None
        return found
    if reference_column:
        if reference_column not in tasks.column_names:
            raise InputError(
                f"{where}: no column '{reference_column}' (execute.reference_column; keep it with fetch.keep_columns)"
            )
        return {t: reference_asserts(r) for t, r in zip(ids, tasks.column(reference_column).to_pylist()) if r}
    return {}


@dataclass(frozen=True)
class ExecutionSummary:
    model: str
    statuses: dict[str, int]
    reused: int

    def line(self) -> str:
        total = sum(self.statuses.values())
        counts = ", ".join(f"{self.statuses.get(s, 0)} {s}" for s in STATUSES)
        rate = self.statuses.get("pass", 0) / total if total else 0.0
        return f"{self.model}: {counts} (pass rate {rate:.0%}); {self.reused} reused"


NETWORK = {True: "own network namespace", False: "no network namespace (audit hook only)", None: "nothing ran"}


@dataclass(frozen=True)
class Executed:
    """The execute stage's result: the executions table, a summary per model, and how the runs were contained."""

    table: pa.Table
    summaries: list[ExecutionSummary]
    network_isolated: bool | None  # every run had its own network namespace; None when nothing ran
    contained: bool  # runs had bubblewrap's namespaces (a private filesystem, PID and network namespace)
    workers: int

    def line(self, *, output: Path) -> str:
        where = "in bubblewrap" if self.contained else "without bubblewrap"
        return (
            f"{self.table.num_rows} runs on {self.workers} workers {where}, {NETWORK[self.network_isolated]} "
            f"-> {output}"
        )


def run_hash(code: str, tests: Sequence[str], limits: Limits) -> str:
    key = {"code": code, "tests": list(tests), "limits": asdict(limits)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def execute(
    *,
    tasks: pa.Table,
    generations: pa.Table,
    compare: Sequence[str],
    tests: dict[str, tuple[str, ...]],
    sandbox: Sandbox,
    previous: pa.Table | None = None,
) -> Executed:
    """One row per (task, model) answer; a run whose code, tests and limits are unchanged in `previous` is reused."""
    known_tasks = set(tasks.column("task_id").to_pylist())
    done = {r["run_hash"]: r for r in previous.to_pylist()} if previous is not None else {}
    rows: dict[tuple[str, str], dict] = {}
    jobs: list[Job] = []
    reused: Counter[str] = Counter()
    for task_id, model, response in zip(*(generations.column(c).to_pylist() for c in ("task_id", "model", "response"))):
        if model not in compare or task_id not in known_tasks or response is None:
            continue
        code = extract_code(response)
        if code is None:
            rows[(task_id, model)] = _row(
                task_id, model, "no_code", None, None, 0.0, None, run_hash("", (), sandbox.limits)
            )
            continue
        checks = tests.get(task_id, ())
        key = run_hash(code, checks, sandbox.limits)
        if key in done:
            rows[(task_id, model)] = {**done[key], "task_id": task_id, "model": model}
            reused[model] += 1
        else:
            jobs.append(Job((task_id, model, key), code, checks))

    isolated: set[bool | None] = set()
    with tqdm(total=len(jobs), desc="execute", unit=" runs", disable=None) as bar:
        for job, result in sandbox.run_all(jobs):
            task_id, model, key = job.key
            rows[(task_id, model)] = _from_result(task_id, model, result, key)
            isolated.add(result.network_isolated)
            bar.update(1)

    ordered = [rows[k] for k in sorted(rows, key=lambda k: (compare.index(k[1]), k[0]))]
    table = pa.Table.from_pylist(ordered, schema=EXECUTIONS.schema)
    summaries = [
        ExecutionSummary(m, dict(Counter(r["status"] for r in ordered if r["model"] == m)), reused[m]) for m in compare
    ]
    ran = isolated - {None}
    return Executed(table, summaries, all(ran) if ran else None, sandbox.contained, sandbox.workers)


def _from_result(task_id: str, model: str, result: Result, key: str) -> dict:
    return _row(
        task_id,
        model,
        result.status,
        result.tests_passed,
        result.tests_total,
        round(result.duration_s, 3),
        result.stderr_tail,
        key,
    )


def _row(
    task_id: str,
    model: str,
    status: str,
    passed: int | None,
    total: int | None,
    duration: float,
    stderr: str | None,
    key: str,
) -> dict:
    return {
        "task_id": task_id,
        "model": model,
        "status": status,
        "tests_passed": passed,
        "tests_total": total,
        "duration_s": duration,
        "stderr_tail": stderr,
        "run_hash": key,
    }
