"""Each stage's `deps:` in dvc.yaml cover every project module the stage imports, so that a change in any of them
reruns the stage (and what follows it), and every dep names something that exists or that a stage writes.

The imports are read statically: each module is parsed, and every `import` of `llm_feedback` or of another stage
(at the top or inside a function) is followed. Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too; a
folder dep covers every file under it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = "llm_feedback"
STAGES = "stages"  # a stage may run others (evaluate runs format, generate, push, pull and analyze)
SRC = PROJECT_ROOT / "src"


def module_file(name: str) -> Path | None:
    """The file a project module name is loaded from, or None for a name that is no module (a class, a function)."""
    base = (PROJECT_ROOT if name.split(".")[0] == STAGES else SRC).joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imported_modules(path: Path, package: str) -> set[str]:
    """The project modules one file imports, with the packages each passes through. `package` resolves relative
    imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    modules = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in (PACKAGE, STAGES):
            continue
        modules.update(prefix for k in range(1, len(parts) + 1) if module_file(prefix := ".".join(parts[:k])))
    return modules


def import_closure(stage: str) -> set[Path]:
    """stages/<stage>.py and every project module file it reaches through imports, relative to the project root."""
    entry = PROJECT_ROOT / "stages" / f"{stage}.py"
    files, seen = {entry}, set()
    todo = imported_modules(entry, "stages")
    while todo:
        name = todo.pop()
        seen.add(name)
        path = module_file(name)
        files.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo |= imported_modules(path, package) - seen
    return {f.relative_to(PROJECT_ROOT) for f in files}


@pytest.fixture(scope="module")
def stages() -> dict[str, tuple[list[Path], list[Path]]]:
    """Per stage, its deps and outs as DVC resolves them from dvc.yaml and params.yaml."""
    from dvc.repo import Repo

    with Repo(str(PROJECT_ROOT)) as repo:
        return {
            s.name: ([Path(d.def_path) for d in s.deps], [Path(o.def_path) for o in s.outs]) for s in repo.index.stages
        }


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def test_every_stage_lists_each_module_it_imports(stages) -> None:
    assert set(stages) == {p.stem for p in (PROJECT_ROOT / "stages").glob("*.py")} - {"__init__"}, (
        "one stage per module"
    )
    missing = []
    for name, (deps, _) in stages.items():
        absent = sorted(str(f) for f in import_closure(name) if not covered(f, deps))
        if absent:
            missing.append(f"stage {name}: dvc.yaml deps miss {', '.join(absent)}")
    assert not missing, "\n".join(missing)


def test_every_dep_exists_or_is_written_by_a_stage(stages) -> None:
    outs = [out for _, stage_outs in stages.values() for out in stage_outs]
    dangling = [
        f"stage {name}: dep {dep} does not exist and no stage writes it"
        for name, (deps, _) in stages.items()
        for dep in deps
        if not (PROJECT_ROOT / dep).exists() and not covered(dep, outs)
    ]
    assert not dangling, "\n".join(dangling)


def test_export_builds_on_what_analyze_writes(stages) -> None:
    """The edge the diagrams draw: export reads analyze's scores, so new scores (or a new way to choose them) reach
    the training data."""
    export_deps, analyze_outs = stages["export"][0], stages["analyze"][1]
    assert [dep for dep in export_deps if covered(dep, analyze_outs)] == [Path("data/scores.parquet")]


def test_the_closure_follows_packages_and_imports_inside_functions() -> None:
    """The checks above are only as good as the closure: it must reach what the stages really load."""
    export = import_closure("export")
    for module in ("__init__", "export", "analysis", "stats", "params", "artifacts", "errors", "stage", "secrets"):
        assert Path(f"src/llm_feedback/{module}.py") in export, module
    assert Path("src/llm_feedback/annotation/__init__.py") in import_closure("pull"), "a package's __init__ runs"
    generate = import_closure("generate")
    assert Path("src/llm_feedback/llm/openai_backend.py") in generate, "imported inside a function (factory.py)"
    assert Path("stages/generate.py") in generate and not any(p.parts[0] == "tests" for p in generate)
    assert {Path("stages/analyze.py"), Path("src/llm_feedback/leakage.py")} <= import_closure("evaluate"), "a stage's"
