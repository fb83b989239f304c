"""A virtualenv of its own for a program whose pins clash with the pipeline's (the annotation server, the inference
engine), built on first use and rebuilt only when what it is built from changes (a stamp file named by a
fingerprint of it)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from llm_feedback.errors import PipelineError

INSTALL_TIMEOUT_S = 1200.0


def ensure_venv(
    venv: Path, *, fingerprint: str, pip_arguments: Callable[[Path], list[str]], announce: str, what: str
) -> Path:
    """The venv's python, installed first if the stamp of `fingerprint` is missing. `pip_arguments(scratch)` writes
    what pip reads into an empty scratch folder and returns `pip install`'s arguments; `announce` is printed before an
    install, and `what` names the program in an error ("the annotation server")."""
    python = venv / "bin" / "python"
    stamp = venv / f".installed-{fingerprint}"
    if stamp.exists() and python.exists():
        return python
    print(announce, flush=True)
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], f"create {what}'s virtualenv")
    for old in venv.glob(".installed-*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="venv-install-") as scratch:
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, *pip_arguments(Path(scratch))], f"install {what}")
    stamp.touch()
    return python


def _run(command: list[str], what: str) -> None:
    """One line on failure: pip's last ERROR line, else its last line."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no output"]
        raise PipelineError(f"could not {what}: {errors[-1]}")
