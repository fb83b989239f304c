"""annotation_server is installed in the server's own venv, not this one; its stdlib-only modules (the text query
parser, the SQL helpers) are tested here straight from the source tree."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SERVER_PROJECT = PROJECT_ROOT / "annotation_server"
if str(SERVER_PROJECT) not in sys.path:
    sys.path.insert(0, str(SERVER_PROJECT))


def imports_beyond_stdlib(module: str) -> set[str]:
    """Top-level names `module` imports that are neither the standard library nor annotation_server itself."""
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None and not node.level
    }
    roots = {name.split(".")[0] for name in names}
    return roots - set(sys.stdlib_module_names) - {"__future__", "annotation_server"}
