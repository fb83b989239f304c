"""The embedded annotation server: the real Argilla 2.8 server and UI on SQLite, managed from the pipeline.

The server lives in its own virtualenv (its pins clash with the pipeline's), built from `annotation_server/` and its
lock file, and runs detached on loopback with everything (database, credentials, log, venv) in one data folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from llm_feedback.errors import ConfigError, PipelineError

PACKAGE_DIR = Path(__file__).resolve().parents[3] / "annotation_server"
OWNER = "owner"
READY_PATH = "/api/v1/version"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
# Variables the server must never inherit: the pipeline's tokens have no business in an annotation server.
SECRET_VARIABLES = ("HF_TOKEN", "OPENAI_API_KEY", "ARGILLA_API_KEY", "ARGILLA_API_URL")


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)  # never in a traceback or a log line
    api_key: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    running: bool
    url: str
    pid: int | None
    version: str | None
    datasets: int | None


@dataclasses.dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6900
    venv_dir: Path | None = None
    launcher_args: tuple[str, ...] = ()  # extra `python -m annotation_server` options (the benchmarks' --no-speedups)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def venv(self) -> Path:
        return self.venv_dir or self.data_dir / "venv"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------------------
# credentials


def load_credentials(server: EmbeddedServer) -> Credentials | None:
    path = server.credentials_file
    if not path.exists():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PipelineError(f"{path}: readable by others (mode {mode:o}); run: chmod 600 {path}")
    data = json.loads(path.read_text())
    return Credentials(data["username"], data["password"], data["api_key"])


def ensure_credentials(server: EmbeddedServer) -> tuple[Credentials, bool]:
    """The owner's credentials, generated on first use into a 0600 file; True when they were just created."""
    existing = load_credentials(server)
    if existing is not None:
        return existing, False
    credentials = Credentials(OWNER, secrets.token_urlsafe(18), f"llmfb.{secrets.token_urlsafe(32)}")
    server.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(server.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(credentials), f, indent=2)
    return credentials, True


# ---------------------------------------------------------------------------------------------------------------------
# the server's own virtualenv


def package_fingerprint() -> str:
    """What the server venv is built from: reinstall when the lock or our package's code changes."""
    digest = hashlib.sha256()
    files = [PACKAGE_DIR / "requirements.lock", PACKAGE_DIR / "pyproject.toml"]
    files += sorted((PACKAGE_DIR / "annotation_server").glob("*.py"))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_venv(server: EmbeddedServer) -> Path:
    """Create or update the server's virtualenv; a no-op when it matches the package and lock."""
    python = server.venv / "bin" / "python"
    stamp = server.venv / f".installed-{package_fingerprint()}"
    if stamp.exists() and python.exists():
        return python
    print(f"annotation server: installing argilla-server into {server.venv} (first start only)...", flush=True)
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(server.venv)], "create the server's virtualenv")
    for old in server.venv.glob(".installed-*"):
        old.unlink()
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--constraint", str(PACKAGE_DIR / "requirements.lock"), str(PACKAGE_DIR)],
        "install the annotation server",
    )
    stamp.touch()
    return python


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipelineError(f"could not {what}: {tail[0]}")


# ---------------------------------------------------------------------------------------------------------------------
# lifecycle


def start(server: EmbeddedServer, allow_remote: bool = False) -> tuple[Credentials | None, bool]:
    """Start the server detached and wait until it answers. Returns the credentials when they were just created
    (to show once) and whether it was already running."""
    if not is_loopback(server.host) and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {server.host}: annotators' data would be reachable from the network; "
            "pass --allow-remote if that is what you want"
        )
    if _running_pid(server) is not None and _version(server) is not None:
        return None, True
    python = ensure_venv(server)
    credentials, created = ensure_credentials(server)
    if _version(server) is not None:
        raise PipelineError(f"port {server.port} is taken by another server ({server.url}); use --port")
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    with server.log_file.open("ab") as log:
        process = subprocess.Popen(
            [str(python), "-m", "annotation_server", "--data-dir", str(server.data_dir.resolve()),
             "--host", server.host, "--port", str(server.port), *server.launcher_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            cwd=server.data_dir,  # not the repository root, whose annotation_server/ folder could shadow the package
        )
    server.pid_file.write_text(json.dumps({"pid": process.pid, "host": server.host, "port": server.port}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while _version(server) is None:
        if process.poll() is not None:
            server.pid_file.unlink(missing_ok=True)
            raise PipelineError(f"the annotation server exited at start-up: {_log_tail(server)} (log: {server.log_file})")
        if time.monotonic() > deadline:
            stop(server)
            raise PipelineError(f"the annotation server did not answer within {START_TIMEOUT_S:.0f} s (log: {server.log_file})")
        time.sleep(0.25)
    return (credentials if created else None), False


def stop(server: EmbeddedServer) -> bool:
    """Stop gracefully (SIGTERM, then SIGKILL after a grace period); False when it was not running."""
    pid = _running_pid(server)
    if pid is None:
        server.pid_file.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    server.pid_file.unlink(missing_ok=True)
    return True


def status(server: EmbeddedServer) -> ServerStatus:
    server = _as_started(server)
    pid = _running_pid(server)
    version = _version(server) if pid is not None else None
    datasets = None
    credentials = load_credentials(server)
    if version is not None and credentials is not None:
        datasets = len(_get_json(server, "/api/v1/me/datasets", credentials.api_key).get("items", []))
    return ServerStatus(version is not None, server.url, pid, version, datasets)


def _as_started(server: EmbeddedServer) -> EmbeddedServer:
    """The address it was started on (a later `status` need not repeat --host/--port)."""
    try:
        recorded = json.loads(server.pid_file.read_text())
        return dataclasses.replace(server, host=recorded["host"], port=int(recorded["port"]))
    except (FileNotFoundError, ValueError, KeyError):
        return server


def _running_pid(server: EmbeddedServer) -> int | None:
    try:
        pid = int(json.loads(server.pid_file.read_text())["pid"])
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process still answers kill(0): reap it
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def _version(server: EmbeddedServer) -> str | None:
    try:
        return str(_get_json(server, READY_PATH, None).get("version"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _get_json(server: EmbeddedServer, path: str, api_key: str | None) -> dict:
    request = urllib.request.Request(server.url + path, headers={"X-Argilla-Api-Key": api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _log_tail(server: EmbeddedServer) -> str:
    try:
        lines = [line for line in server.log_file.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return "no log"
    return lines[-1][:300] if lines else "empty log"
