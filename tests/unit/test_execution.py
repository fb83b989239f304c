"""Finding the code in an answer and the tests for a task, and which tests the pipeline judges itself."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.artifacts import TASKS
from llm_feedback.errors import InputError
from llm_feedback.execution import (
    execute,
    extract_code,
    reference_asserts,
    split_statements,
    task_tests,
)
from llm_feedback.params import ExecuteParams
from llm_feedback.sandbox import Sandbox, _check, _records, _verdict
from llm_feedback.testing.synthetic_annotations import generations_for


def test_code_comes_from_python_fences_in_order() -> None:
    answer = (
        "Here you go:\n\n```python\ndef f():\n    return 1\n```\n\nUsage:\n\n```py\nprint(f())\n```\n\n"
        "Shell:\n```bash\npip install x\n```\n"
    )
    assert extract_code(answer) == "def f():\n    return 1\n\nprint(f())\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n", "an untagged fence counts as Python"


def test_bare_python_counts_and_prose_is_no_code() -> None:
    assert extract_code("def f():\n    return 2\n") == "def f():\n    return 2\n"
    assert extract_code("I cannot help with that request.") is None
    assert extract_code("print('hi')") is None, "bare code without a definition is not taken for an answer"
    assert extract_code("```javascript\nconsole.log(1)\n```") is None


def test_tests_split_into_statements_and_reference_asserts() -> None:
    assert split_statements("assert f(1) == 1\nassert f(2) == 4\n") == ("assert f(1) == 1", "assert f(2) == 4")
    decorated = "@retry(3)\ndef flaky():\n    return 1\n\nassert flaky() == 1\n"
    assert split_statements(decorated) == ("@retry(3)\ndef flaky():\n    return 1", "assert flaky() == 1")
    reference = (
        "```python\ndef f(x):\n    return x * x\n\nassert f(2) == 4\nassert f(3) == 9\n```\nThis squares a number."
    )
    assert reference_asserts(reference) == ("assert f(2) == 4", "assert f(3) == 9")
    assert reference_asserts("no code here") == ()


def tasks_with(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {
        "task_id": [f"t{i}" for i in range(n)],
        "instruction": ["x"] * n,
        "source": ["s"] * n,
        "source_row": list(range(n)),
    }
    return TASKS.validate(pa.table({**base, **columns}), "tasks")


def test_task_tests_by_column_reference_or_none() -> None:
    tasks = tasks_with(tests=["assert f() == 1", None], response=["", "```python\nassert g() == 2\n```"])

    def found(table: pa.Table, tests: str | None, reference: str | None) -> dict[str, tuple[str, ...]]:
        return task_tests(table, tests_column=tests, reference_column=reference, where="tasks.parquet")

    assert found(tasks, "tests", None) == {"t0": ("assert f() == 1",)}
    assert found(tasks, None, "response") == {"t1": ("assert g() == 2",)}
    assert found(tasks, "missing", None) == {}
    with pytest.raises(InputError, match=r"no column 'answer' \(execute.reference_column"):
        found(tasks, None, "answer")
    broken = tasks_with(tests=["assert f( == 1"])
    with pytest.raises(InputError, match=r"tasks.parquet: row 0 \(task t0\): column 'tests' is not valid Python"):
        found(broken, "tests", None)


def test_asserts_against_a_literal_are_judged_from_the_value_alone() -> None:
    judged = _check("assert chunk(\n    [1, 2], 1) == [[1], [2]]")
    assert (judged.expr, judged.expected) == ("chunk(\n    [1, 2], 1)", [[1], [2]])
    assert _check("assert ok() is True").expr == "ok()" and _check("assert x in {1, 2}").expected == {1, 2}
    for kept_inside in (
        "assert f(1) == g(1)",
        "assert f() is 5",
        "x = f()",
        "assert f()",
        "assert f() == 1 == 1",
        "try:\n    f()\nexcept ValueError:\n    pass",
        "assert f( == 1",
    ):
        assert _check(kept_inside).expr is None, kept_inside


def test_the_verdict_compares_values_here_and_refuses_a_made_up_report() -> None:
    checks = [_check("assert double(2) == 4"), _check("y = double(1)")]

    def verdict(*lines: str):
        records = _records("\n".join(['{"code": null}', *lines, '{"done": true}']))
        return records and _verdict(records, "", checks)

    assert verdict('{"test": 0, "value": "4.0"}', '{"test": 1, "error": null}') == ("pass", 2, 2, None)
    assert verdict('{"test": 0, "value": "5"}', '{"test": 1, "error": null}')[:3] == ("fail", 1, 2)
    assert verdict('{"test": 0, "error": null}', '{"test": 1, "error": null}')[3] == "test 1: no value to check"
    assert verdict('{"test": 0, "value": "__import__(\'os\')"}', '{"test": 1, "error": null}')[1] == 1
    assert verdict('{"test": 0, "value": "4"}', '{"test": 0, "value": "4"}') is None, "a test reported twice"
    assert _records('{"code": null}\n{"done": true}\n{"test": 0, "value": "4"}') is None, "after the end"
    assert _records('{"code": null}') is None, "cut short"


def test_the_summary_line_says_how_runs_were_contained_and_a_rerun_runs_nothing() -> None:
    tasks = tasks_with(tests=[None, None])
    generations = generations_for(["t0", "t1"], ["a", "b"])
    box = Sandbox(ExecuteParams(), bwrap=None)
    first = execute(tasks=tasks, generations=generations, compare=["a", "b"], tests={}, sandbox=box)
    assert [s.line() for s in first.summaries] == [
        f"{m}: 2 pass, 0 fail, 0 error, 0 timeout, 0 no_code (pass rate 100%); 0 reused" for m in "ab"
    ]
    network = "(own network namespace|no network namespace \\(audit hook only\\))"
    assert re.fullmatch(
        rf"4 runs on {box.workers} workers without bubblewrap, {network} -> out.parquet",
        first.line(output=Path("out.parquet")),
    )
    again = execute(
        tasks=tasks, generations=generations, compare=["a", "b"], tests={}, sandbox=box, previous=first.table
    )
    assert again.table == first.table and [s.reused for s in again.summaries] == [2, 2]
    assert again.line(output=Path("out.parquet")) == (
        f"4 runs on {box.workers} workers without bubblewrap, nothing ran -> out.parquet"
    )
