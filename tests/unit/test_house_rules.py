"""The rules docs/architecture.md states about who may import or read what, checked on the source: stages never
import each other (but evaluate, which runs the stages its study needs), the library never imports stages, the
embedded server's package and the pipeline never import each other, and only params.py parses YAML (params.yaml and
the sample file go through its loader)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

LIBRARY = PROJECT_ROOT / "src" / "llm_feedback"
SERVER = PROJECT_ROOT / "annotation_server" / "annotation_server"
STAGES = PROJECT_ROOT / "stages"
EVALUATE = STAGES / "evaluate.py"
EVALUATE_RUNS = {"stages.format", "stages.generate", "stages.push", "stages.pull", "stages.analyze"}


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "_annotation_server" not in p.parts and p != EVALUATE)


def imported_names(path: Path) -> Iterator[str]:
    """Every module name one file imports, at the top or inside a function (relative imports as written)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def offenders(files: list[Path], forbidden: str) -> list[str]:
    return [
        f"{path.name} imports {name}"
        for path in files
        for name in imported_names(path)
        if name == forbidden or name.startswith(f"{forbidden}.")
    ]


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [(STAGES, "stages"), (LIBRARY, "stages"), (LIBRARY, "annotation_server"), (SERVER, "llm_feedback")],
    ids=[
        "stages-import-no-stage",
        "library-imports-no-stage",
        "library-imports-no-server",
        "server-imports-no-library",
    ],
)
def test_imports_respect_the_layers(folder: Path, forbidden: str) -> None:
    files = python_files(folder)
    assert files, f"nothing to check in {folder}"
    assert offenders(files, forbidden) == []


def test_evaluate_runs_only_the_stages_of_its_study() -> None:
    """`from stages import a, b` names the package; the stages it brings are the imported names."""
    tree = ast.parse(EVALUATE.read_text(encoding="utf-8"))
    stages = {
        f"stages.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "stages"
        for alias in node.names
    }
    other = {name for name in imported_names(EVALUATE) if name.startswith("stages.")}
    assert stages | other == EVALUATE_RUNS


def yaml_parsing_calls(path: Path) -> list[str]:
    """Calls of PyYAML's parsers and loaders (`yaml.safe_load`, `yaml.SafeLoader(...)`, ...) in one file."""
    return [
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "yaml"
        and "load" in node.func.attr.lower()
    ]


def test_only_params_parses_yaml() -> None:
    parsers = sorted(
        str(path.relative_to(PROJECT_ROOT))
        for path in python_files(LIBRARY) + python_files(STAGES)
        if yaml_parsing_calls(path)
    )
    assert parsers == ["src/llm_feedback/params.py"]


def test_the_checks_see_a_forbidden_import(tmp_path: Path) -> None:
    """The checks above pass because the rules hold, not because they find no imports."""
    module = tmp_path / "bad.py"
    module.write_text(
        "import os\n\ndef f():\n    from stages.fetch import main\n    import yaml\n    yaml.safe_load('a: 1')\n"
    )
    assert offenders([module], "stages") == ["bad.py imports stages.fetch"]
    assert set(imported_names(module)) == {"os", "stages.fetch", "yaml"}
    assert yaml_parsing_calls(module) == ["safe_load"]
