"""Finding the code in an answer and the tests for a task."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llm_feedback.artifacts import TASKS
from llm_feedback.errors import InputError
from llm_feedback.execution import extract_code, reference_asserts, split_statements, task_tests


def test_code_comes_from_python_fences_in_order() -> None:
    answer = ("Here you go:\n\n```python\ndef f():\n    return 1\n```\n\nUsage:\n\n```py\nprint(f())\n```\n\n"
              "Shell:\n```bash\npip install x\n```\n")
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
    reference = ("```python\ndef f(x):\n    return x * x\n\nassert f(2) == 4\nassert f(3) == 9\n```\n"
                 "This squares a number.")
    assert reference_asserts(reference) == ("assert f(2) == 4", "assert f(3) == 9")
    assert reference_asserts("no code here") == ()


def tasks_with(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"task_id": [f"t{i}" for i in range(n)], "instruction": ["x"] * n, "source": ["s"] * n,
            "source_row": list(range(n))}
    return TASKS.validate(pa.table({**base, **columns}), "tasks")


def test_task_tests_by_column_reference_or_none() -> None:
    tasks = tasks_with(tests=["assert f() == 1", None], response=["", "```python\nassert g() == 2\n```"])
    assert task_tests(tasks, "tests", None, "tasks.parquet") == {"t0": ("assert f() == 1",)}
    assert task_tests(tasks, None, "response", "tasks.parquet") == {"t1": ("assert g() == 2",)}
    assert task_tests(tasks, "missing", None, "tasks.parquet") == {}
    with pytest.raises(InputError, match=r"no column 'answer' \(execute.reference_column"):
        task_tests(tasks, None, "answer", "tasks.parquet")
    broken = tasks_with(tests=["assert f( == 1"])
    with pytest.raises(InputError, match=r"tasks.parquet: row 0 \(task t0\): column 'tests' is not valid Python"):
        task_tests(broken, "tests", None, "tasks.parquet")
