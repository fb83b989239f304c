"""The embedded annotation server: the real Argilla 2.8 server and UI on SQLite, managed from the pipeline.

The server lives in its own virtualenv (its pins clash with the pipeline's), built from the `annotation_server` project
and its lock file (shipped inside this package), and runs detached on loopback with everything (database,
credentials, log, venv) in one data folder.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path, PurePosixPath

import filelock
import psutil

from llm_feedback import venvs
from llm_feedback.artifacts import atomic_path
from llm_feedback.errors import ConfigError, PipelineError
from llm_feedback.secrets import register_secret

# The server's own project (pyproject.toml, lock, code), package data in a wheel as in a checkout; read through
# importlib.resources only, so it is found wherever and however llm_feedback is installed.
PROJECT = resources.files("llm_feedback") / "_annotation_server"
OWNER = "owner"
READY_PATH = "/api/v1/version"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
LOCK_TIMEOUT_S = 900.0  # a concurrent first start may be installing the venv (about a minute, more on a slow disk)
PROBE_TIMEOUT_S = 2.0  # a loopback server answers /version in milliseconds; a listener that never answers is not ours
PRIVATE_UMASK = 0o077  # the database and its -wal/-shm hold every API key: nobody but the owner may read them
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

    def __post_init__(self) -> None:
        # Absolute once, here: a relative path would be resolved again inside the server's working directory.
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())
        if self.venv_dir is not None:
            object.__setattr__(self, "venv_dir", Path(self.venv_dir).absolute())

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

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "manager.lock"


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
    fix = "delete it and run `llm-feedback server start`: the owner gets new credentials, the data stays"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        credentials = Credentials(**{key: _non_empty_text(data[key]) for key in ("username", "password", "api_key")})
    except PermissionError:
        raise PipelineError(f"{path}: cannot be read by this user (it belongs to uid {path.stat().st_uid})") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise PipelineError(f"{path}: not valid credentials ({type(e).__name__}); {fix}") from None
    register_secret(credentials.password)  # never printed or recorded from here on
    register_secret(credentials.api_key)
    return credentials


def _non_empty_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("not a non-empty string")
    return value


def ensure_credentials(server: EmbeddedServer) -> tuple[Credentials, bool]:
    """The owner's credentials, generated on first use into a 0600 file; True when they were just created."""
    existing = load_credentials(server)
    if existing is not None:
        return existing, False
    credentials = Credentials(OWNER, secrets.token_urlsafe(18), f"llmfb.{secrets.token_urlsafe(32)}")
    with atomic_path(server.credentials_file) as tmp:  # 0600 from the start; never seen half-written
        tmp.write_text(json.dumps(dataclasses.asdict(credentials), indent=2))
    register_secret(credentials.password)
    register_secret(credentials.api_key)
    return credentials, True


# ---------------------------------------------------------------------------------------------------------------------
# the data folder


def create_data_dir(server: EmbeddedServer) -> None:
    """The data folder, created 0700 (or made 0700): the manager's lock lives in it, so this comes first."""
    data_dir = server.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise PipelineError(f"{data_dir}: not a folder (argilla.data_dir / --data-dir must name a folder)")
    with _data_dir_errors(data_dir):
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)


def tighten_data_dir(server: EmbeddedServer) -> None:
    """Before a server starts: every file in its folder 0600, every folder 0700, and the folder writable.

    The server's virtualenv is left as it is (its programs must stay executable; the 0700 folder above it already
    keeps others out), and symbolic links are never followed. A running server needs none of this: it was started
    with umask 077.
    """
    data_dir = server.data_dir
    with _data_dir_errors(data_dir):
        for root, folders, files in os.walk(data_dir):
            if Path(root) == data_dir and server.venv.parent == data_dir:
                folders[:] = [name for name in folders if name != server.venv.name]
            for name in folders + files:
                path = Path(root, name)
                if not path.is_symlink():
                    os.chmod(path, 0o700 if path.is_dir() else stat.S_IMODE(path.lstat().st_mode) & 0o600)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-"):  # unique: starts may run at once
            pass


@contextmanager
def _data_dir_errors(data_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        problem = "not writable" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "cannot be used"
        raise PipelineError(f"{data_dir}: {problem} as the server's data folder ({e.strerror}: {e.filename})") from None


# ---------------------------------------------------------------------------------------------------------------------
# the server's own virtualenv


def project_files() -> list[str]:
    """The files the server venv is built from, by their path in the project: the lock, pyproject.toml, the code."""
    code = sorted(file.name for file in (PROJECT / "annotation_server").iterdir() if file.name.endswith(".py"))
    return ["requirements.lock", "pyproject.toml", *(f"annotation_server/{name}" for name in code)]


def package_fingerprint() -> str:
    """What the server venv is built from: reinstall when the lock or our package's code changes."""
    digest = hashlib.sha256()
    for name in project_files():
        digest.update(PurePosixPath(name).name.encode() + b"\0" + (PROJECT / name).read_bytes())
    return digest.hexdigest()[:16]


def ensure_venv(server: EmbeddedServer) -> Path:
    """Create or update the server's virtualenv; a no-op when it matches the package and lock."""

    def from_a_copy(scratch: Path) -> list[str]:
        """pip builds a project where it lies: from a copy, the installed package (maybe read-only, maybe a zip)
        stays as is."""
        for name in project_files():
            target = scratch / name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes((PROJECT / name).read_bytes())
        return ["--constraint", str(scratch / "requirements.lock"), str(scratch)]

    return venvs.ensure_venv(
        server.venv,
        fingerprint=package_fingerprint(),
        pip_arguments=from_a_copy,
        announce=f"annotation server: installing argilla-server into {server.venv} (first start only)...",
        what="the annotation server",
    )


# ---------------------------------------------------------------------------------------------------------------------
# lifecycle


def start(server: EmbeddedServer, allow_remote: bool = False) -> tuple[Credentials | None, bool]:
    """Start the server detached and wait until it answers. Returns the credentials when they were just created
    (to show once) and whether it was already running.

    Starts are serialised by a lock in the data folder, so two at once give one server and one "already running".
    """
    if not is_loopback(server.host) and not allow_remote:
        raise ConfigError(
            f"refusing to listen on {server.host}: annotators' data would be reachable from the network; "
            "pass --allow-remote if that is what you want"
        )
    create_data_dir(server)
    with _managing(server):
        if _running_pid(server) is not None and _version(server) is not None:
            return None, True
        tighten_data_dir(server)
        python = ensure_venv(server)
        credentials, created = ensure_credentials(server)
        _check_port_free(server)
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        log_fd = os.open(server.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            process = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "annotation_server",
                    "--data-dir",
                    str(server.data_dir),
                    "--host",
                    server.host,
                    "--port",
                    str(server.port),
                    *server.launcher_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                # not the repository root, whose annotation_server/ folder could shadow the package
                cwd=server.data_dir,
                umask=PRIVATE_UMASK,
            )
        _write_pid_file(server, process.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _version(server) is None:
            if process.poll() is not None:
                server.pid_file.unlink(missing_ok=True)
                raise PipelineError(
                    f"the annotation server exited at start-up: {_log_tail(server)} (log: {server.log_file})"
                )
            if time.monotonic() > deadline:
                _terminate(process.pid)
                server.pid_file.unlink(missing_ok=True)
                raise PipelineError(
                    f"the annotation server did not answer within {START_TIMEOUT_S:.0f} s (log: {server.log_file})"
                )
            time.sleep(0.25)
    return (credentials if created else None), False


def stop(server: EmbeddedServer) -> bool:
    """Stop gracefully (SIGTERM, then SIGKILL after a grace period); False when it was not running.

    Only the process this project started is signalled: a pid in server.json that now belongs to another process
    (the server died and the pid was reused) is left alone.
    """
    if not server.data_dir.is_dir():
        return False
    with _managing(server):
        pid = _running_pid(server)
        if pid is not None:
            _terminate(pid)
        server.pid_file.unlink(missing_ok=True)
    return pid is not None


def status(server: EmbeddedServer) -> ServerStatus:
    server = _as_started(server)
    pid = _running_pid(server)
    version = _version(server) if pid is not None else None
    datasets = None
    credentials = load_credentials(server)
    if version is not None and credentials is not None:
        datasets = len(_get_json(server, "/api/v1/me/datasets", credentials.api_key).get("items", []))
    return ServerStatus(version is not None, server.url, pid, version, datasets)


def _managing(server: EmbeddedServer) -> filelock.FileLock:
    """The manager's lock (the launcher holds its own while serving): one start or stop at a time per data folder."""
    return filelock.FileLock(server.lock_file, timeout=LOCK_TIMEOUT_S, mode=0o600)


def _check_port_free(server: EmbeddedServer) -> None:
    """A port someone else holds is named as such, at once (not as a start-up failure after the venv check)."""
    try:
        with socket.create_connection((server.host, server.port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError:
        return  # nothing listens there
    if _version(server) is not None:
        raise PipelineError(
            f"port {server.port} is taken by another Argilla server ({server.url}); use --port or argilla.port"
        )
    raise PipelineError(f"port {server.port} is in use by something that is not Argilla; use --port or argilla.port")


def _write_pid_file(server: EmbeddedServer, pid: int) -> None:
    """Which process is ours: its pid and its start time, so a reused pid is never mistaken for the server."""
    record = {"pid": pid, "started": psutil.Process(pid).create_time(), "host": server.host, "port": server.port}
    with atomic_path(server.pid_file) as tmp:
        tmp.write_text(json.dumps(record))


def _as_started(server: EmbeddedServer) -> EmbeddedServer:
    """The address it was started on (a later `status` need not repeat --host/--port)."""
    try:
        recorded = json.loads(server.pid_file.read_text())
        return dataclasses.replace(server, host=recorded["host"], port=int(recorded["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return server


def _running_pid(server: EmbeddedServer) -> int | None:
    """The recorded pid, if that process is still the server we started: the same start time (when recorded; a
    server.json of an earlier version has none) and the launcher's command line for this data folder."""
    try:
        recorded = json.loads(server.pid_file.read_text())
        pid, started = int(recorded["pid"]), recorded.get("started")
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - float(started)) > 0.01:
            return None
        command = process.cmdline()
        if process.status() == psutil.STATUS_ZOMBIE or "annotation_server" not in command:
            return None
        if str(server.data_dir) not in command:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, psutil.Error):
        return None
    return pid


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group (its workers too), SIGKILL what is left after the grace period."""
    try:
        process = psutil.Process(pid)
        group = os.getpgid(pid)
    except (psutil.Error, ProcessLookupError):
        return
    signal_group = group == pid  # started with its own session; anything else gets only its own signal

    def send(sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig) if signal_group else os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def _version(server: EmbeddedServer) -> str | None:
    try:
        return str(_get_json(server, READY_PATH, None, timeout=PROBE_TIMEOUT_S).get("version"))
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None


def _get_json(server: EmbeddedServer, path: str, api_key: str | None, *, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(server.url + path, headers={"X-Argilla-Api-Key": api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _log_tail(server: EmbeddedServer) -> str:
    try:
        lines = [line for line in server.log_file.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return "no log"
    prefix = "annotation_server: error: "
    errors = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return (errors or lines or ["empty log"])[-1][:300]
