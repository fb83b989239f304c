"""The process environment argilla_server reads at import time; it must be set before anything imports it.

argilla_server builds its settings, database engines and FastAPI app (copying its 14 MB UI into a fresh
`tempfile.mkdtemp()`) when it is imported, so everything here happens first.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from annotation_server import ENGINE_NAME

SQLITE_TIMEOUT_S = 30
"""How long a connection waits for SQLite's write lock (Argilla's default of 5 s is short for background jobs)."""


def database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'argilla.db'}"


def prepare(data_dir: Path, origin: str) -> None:
    """Point argilla_server at `data_dir`, our search engine and a private temp folder; switch off telemetry."""
    tmp = data_dir / "tmp"
    _empty_dir(tmp)
    os.environ.update(
        {
            "ARGILLA_HOME_PATH": str(data_dir),
            "ARGILLA_DATABASE_URL": database_url(data_dir),
            "ARGILLA_DATABASE_SQLITE_TIMEOUT": str(SQLITE_TIMEOUT_S),
            "ARGILLA_SEARCH_ENGINE": ENGINE_NAME,
            # Only the server's own origin: the UI is served from it, nothing else needs cross-origin access.
            "ARGILLA_CORS_ORIGINS": json.dumps([origin]),
            # Read from the data folder, never from whatever folder the server was started in.
            "ARGILLA_AUTH_OAUTH_CFG": str(data_dir / ".oauth.yaml"),
            # A stable JWT secret, so UI sessions survive a restart (Argilla's default is random per process).
            "ARGILLA_AUTH_SECRET_KEY": _auth_secret(data_dir),
            "ARGILLA_ENABLE_SHARE_YOUR_PROGRESS": "false",
            # Telemetry off (settings.py reads this one; ARGILLA_ENABLE_TELEMETRY=0 also works but warns).
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
            "TMPDIR": str(tmp),
        }
    )
    tempfile.tempdir = None  # forget any cached temp folder: the next mkdtemp() reads TMPDIR again


def _empty_dir(path: Path) -> None:
    """Start with an empty temp folder: each start copies the UI into it and never cleans up."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True)


def _auth_secret(data_dir: Path) -> str:
    path = data_dir / "auth_secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
