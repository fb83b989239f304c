"""The package as `pip install llm-feedback` gives it: every third-party import declared and locked, and a wheel that
starts the embedded server from the copy of the annotation server's project it carries."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from llm_feedback.testing.ports import free_port
from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
SHIPPED = "llm_feedback/_annotation_server/"
OWN_PACKAGES = {"llm_feedback", "stages"}

# Runs in the fresh venv: the SDK logs one record, the installed package's own REST reader reads it back.
PUSH_A_RECORD = """
import json
import argilla as rg
from llm_feedback.annotation.record_pages import list_records

client = rg.Argilla()  # ARGILLA_API_URL and ARGILLA_API_KEY
workspace = rg.Workspace(name="team", client=client).create()
settings = rg.Settings(
    fields=[rg.TextField(name="prompt")], questions=[rg.LabelQuestion(name="ok", labels=["yes", "no"])]
)
dataset = rg.Dataset(name="from-a-wheel", workspace=workspace, settings=settings, client=client).create()
dataset.records.log([rg.Record(id="r1", fields={"prompt": "hello"})])
print(json.dumps([[r.record_id, r.fields] for r in list_records(client, str(dataset.id), {}, "reading")]))
"""


def declared_requirements() -> list[Requirement]:
    """What an install of the package asks for: its dependencies and every extra but the test tools (an extra that
    names another of the package's own extras adds what that one declares)."""
    project = PYPROJECT["project"]
    extras = [r for name, rs in project["optional-dependencies"].items() if name != "dev" for r in rs]
    requirements = [Requirement(r) for r in project["dependencies"] + extras]
    return [r for r in requirements if canonicalize_name(r.name) != canonicalize_name(project["name"])]


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


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of the working tree as a clone holds it (files git tracks or does not ignore), built out of the tree."""
    tree = tmp_path / "tree"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source, target = PROJECT_ROOT / name, tree / name
        if not os.path.lexists(source):
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    # what the annotation server's README install leaves in its folder must not ride along
    stale = tree / "annotation_server" / "build" / "lib" / "annotation_server" / "stale.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(tree),
        ],
        check=True,
    )
    [wheel] = (tmp_path / "dist").glob("llm_feedback-*.whl")
    return wheel


def fresh_venv(venv: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; its third-party packages are the project venv's, through a .pth line.

    A path line in a .pth file is not scanned for .pth files itself, so the project's editable install (its .pth in
    that folder) stays out: llm_feedback can only come from the wheel.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site_packages / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_starts_the_server_and_takes_a_record(
    tmp_path: Path, server_venv: Path
) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    code = PROJECT_ROOT / "annotation_server" / "annotation_server"
    assert {n.removeprefix(SHIPPED) for n in names if n.startswith(SHIPPED)} == {
        "pyproject.toml",
        "requirements.lock",
        *(f"annotation_server/{p.name}" for p in code.glob("*.py")),
    }
    modules = {str(p.relative_to(PROJECT_ROOT / "src")) for p in (PROJECT_ROOT / "src" / "llm_feedback").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel"

    python = fresh_venv(tmp_path / "venv", wheel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*command: str | Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command],
            check=False,
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )

    found = run(
        python, "-c", "import llm_feedback.annotation.embedded as s; print(s.__file__, s.package_fingerprint())"
    )
    assert found.returncode == 0, found.stderr
    module, fingerprint = found.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "venv")  # the wheel's copy, not the checkout's
    # The shipped project is byte for byte what the session's server venv was built from: the venv is reused.
    assert (server_venv / f".installed-{fingerprint}").exists()

    data = tmp_path / "argilla"
    data.mkdir()
    (data / "venv").symlink_to(server_venv)
    port = str(free_port())
    cli = tmp_path / "venv" / "bin" / "llm-feedback"
    started = run(cli, "server", "start", "--data-dir", data, "--port", port)
    assert started.returncode == 0, started.stderr
    assert f"annotation server running at http://127.0.0.1:{port}" in started.stdout
    assert "installing" not in started.stdout
    try:
        api_key = json.loads((data / "credentials.json").read_text())["api_key"]
        pushed = run(python, "-c", PUSH_A_RECORD, ARGILLA_API_URL=f"http://127.0.0.1:{port}", ARGILLA_API_KEY=api_key)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        assert json.loads(pushed.stdout.splitlines()[-1]) == [["r1", {"prompt": "hello"}]]
    finally:
        stopped = run(cli, "server", "stop", "--data-dir", data)
    assert stopped.stdout.strip() == "annotation server stopped"
