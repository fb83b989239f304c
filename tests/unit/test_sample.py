"""The shipped sample is known to be correct: each task's tests pass on a reference solution and fail on a stub."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

TASKS = yaml.safe_load((PROJECT_ROOT / "data/sample/tasks.yaml").read_text(encoding="utf-8"))
SOLUTIONS = yaml.safe_load((PROJECT_ROOT / "data/sample/solutions.yaml").read_text(encoding="utf-8"))
BY_NAME = {task["name"]: task for task in TASKS}


def stub_source(name: str) -> str:
    """A definition that exists but does nothing: tests that pass on it test nothing."""
    if name[0].isupper():
        return (
            f"class {name}:\n"
            "    def __init__(self, *a, **k): pass\n"
            "    def __getattr__(self, attr): return lambda *a, **k: None\n"
        )
    return f"def {name}(*args, **kwargs):\n    return None\n"


def test_sample_is_large_varied_and_consistent() -> None:
    assert len(TASKS) >= 40
    assert len(BY_NAME) == len(TASKS), "task names must be unique"
    assert set(BY_NAME) == set(SOLUTIONS)
    assert {t["difficulty"] for t in TASKS} == {"easy", "medium", "hard"}
    assert len({t["topic"] for t in TASKS}) >= 12
    for task in TASKS:
        assert f"`{task['name']}`" in task["instruction"], task["name"]
        assert re.search(r"^\s*assert ", task["tests"], re.MULTILINE), task["name"]


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_reference_solution_passes(name: str) -> None:
    namespace: dict = {"__name__": f"sample_{name}"}
    exec(compile(SOLUTIONS[name], f"<solution {name}>", "exec"), namespace)
    exec(compile(BY_NAME[name]["tests"], f"<tests {name}>", "exec"), namespace)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_tests_fail_on_a_stub(name: str) -> None:
    namespace: dict = {"__name__": f"stub_{name}"}
    exec(stub_source(name), namespace)
    with pytest.raises((AssertionError, TypeError)):  # a wrong result, or not even the right kind of value
        exec(compile(BY_NAME[name]["tests"], f"<tests {name}>", "exec"), namespace)
