"""The package as `pip install llm-feedback` gives it: every third-party import declared and locked."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
OWN_PACKAGES = {"llm_feedback", "stages"}


def declared_requirements() -> list[Requirement]:
    """What an install of the package asks for: its dependencies and every extra but the test tools."""
    project = PYPROJECT["project"]
    extras = [r for name, rs in project["optional-dependencies"].items() if name != "dev" for r in rs]
    return [Requirement(r) for r in project["dependencies"] + extras]


def third_party_imports(*folders: Path) -> dict[str, Path]:
    """Each top-level module imported from outside the standard library and the project, with a file importing it."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in (name.partition(".")[0] for name in names):
                    if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                        found.setdefault(top, path.relative_to(PROJECT_ROOT))
    return found


def test_every_third_party_import_of_the_code_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in declared_requirements()}
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports(PROJECT_ROOT / "src", PROJECT_ROOT / "stages")
    assert {"pandas", "httpx", "argilla", "yaml"} <= imports.keys()  # the scan sees the code
    undeclared = {
        module: str(path)
        for module, path in imports.items()
        if not declared & {canonicalize_name(d) for d in providers.get(module, [])}
    }
    assert undeclared == {}, "imported but not in pyproject.toml's dependencies"


def test_every_declared_range_holds_the_locked_and_the_installed_version() -> None:
    lines = (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
    locked = {
        canonicalize_name(name): version for name, _, version in (ln.partition("==") for ln in lines if "==" in ln)
    }
    wrong = []
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        for where, version in (("requirements.lock", locked.get(name)), (".venv", importlib.metadata.version(name))):
            if version is None or not requirement.specifier.contains(version, prereleases=True):
                wrong.append(f"{requirement}: {version or 'not pinned'} in {where}")
    assert wrong == []
