"""The embedded server's data stays private, its lifecycle holds under races and reused pids, and every way it cannot
start is one line: real server processes, real listeners, and an unprivileged uid where permissions matter."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llm_feedback.testing.ports import free_port
from tests.conftest import PROJECT_ROOT
from tests.project import run_cli

pytestmark = pytest.mark.slow

NOBODY = 65534  # reads as another local user would
PRIVATE_FILES = ("argilla.db", "argilla.db-wal", "argilla.db-shm", "credentials.json", "server.log", "server.json")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every local user can enter (pytest's own tmp folders are 0700, which would hide what we test)."""
    folder = Path(tempfile.mkdtemp(prefix="llm-feedback-open-"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def data_folder(parent: Path, server_venv: Path) -> Path:
    """A data folder as an older version left it: world-readable, with the shared server venv linked in."""
    data = parent / "argilla"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "venv").symlink_to(server_venv)
    return data


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["head", "-c", "64", str(path)], capture_output=True, text=True, user=NOBODY, timeout=60, check=False
    )


def server_processes(data: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "annotation_server" in cmdline and str(data) in cmdline:
            found.append(process)
    return found


def test_the_data_folder_and_every_file_in_it_are_private_and_an_old_one_is_tightened(
    open_folder: Path, server_venv: Path
) -> None:
    data = data_folder(open_folder, server_venv)
    (data / "server.log").write_text("an old log\n")
    (data / "server.log").chmod(0o644)
    common = ("--data-dir", str(data), "--port", str(free_port()))
    started = run_cli("server", "start", *common, cwd=open_folder)
    assert started.returncode == 0, started.stderr
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for name in PRIVATE_FILES:
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        for name in ("argilla.db", "credentials.json"):
            attempt = read_as_nobody(data / name)
            assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, (name, attempt.stdout)
        # Even with the folder opened again, the files themselves keep other users out (the server's umask).
        data.chmod(0o755)
        attempt = read_as_nobody(data / "argilla.db")
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt.stdout
    finally:
        assert run_cli("server", "stop", "--data-dir", str(data), cwd=open_folder).returncode == 0

    # A folder someone loosened while it was stopped is tightened again on the next start.
    for name in ("argilla.db", "credentials.json"):
        (data / name).chmod(0o644)
    data.chmod(0o755)
    restarted = run_cli("server", "start", *common, cwd=open_folder)
    try:
        assert restarted.returncode == 0, restarted.stderr
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "argilla.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "credentials.json").stat().st_mode) == 0o600
    finally:
        run_cli("server", "stop", "--data-dir", str(data), cwd=open_folder)


def test_stop_never_signals_a_process_that_reused_the_recorded_pid(tmp_path: Path) -> None:
    data = tmp_path / "argilla"
    data.mkdir()
    for leader, when in ((True, time.time() - 3600), (False, time.time() - 3600), (True, None)):
        # An unrelated process now holds the pid the server once had: in its own group, or not a group leader; and
        # a server.json of an earlier version, which recorded no start time.
        bystander = subprocess.Popen(["sleep", "60"], start_new_session=leader)
        try:
            record = {"pid": bystander.pid, "host": "127.0.0.1", "port": free_port()}
            if when is not None:
                record["started"] = when
            (data / "server.json").write_text(json.dumps(record))
            stopped = run_cli("server", "stop", "--data-dir", str(data), cwd=tmp_path)
            assert stopped.returncode == 0, stopped.stderr
            assert stopped.stdout.strip() == "annotation server was not running"
            assert bystander.poll() is None, "the unrelated process was not signalled"
            assert not (data / "server.json").exists(), "the stale record is gone"
            status = run_cli("server", "status", "--data-dir", str(data), cwd=tmp_path)
            assert status.returncode == 3 and "not running" in status.stdout
        finally:
            bystander.kill()
            bystander.wait()


def test_two_starts_at_once_give_one_server_and_stop_finds_it(tmp_path: Path, server_venv: Path) -> None:
    data = data_folder(tmp_path, server_venv)
    common = ("--data-dir", str(data), "--port", str(free_port()))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_cli("server", "start", *common, cwd=tmp_path), range(2)))
    try:
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        outputs = sorted(r.stdout.splitlines()[0] for r in results)
        assert outputs[0].startswith("annotation server already running at"), outputs
        assert outputs[1].startswith("annotation server running at"), outputs
        assert sum("password:" in r.stdout for r in results) == 1, "the new login is shown once"
        assert len(server_processes(data)) == 1
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir() if p.is_file() and not p.is_symlink()}
        assert modes and set(modes.values()) == {0o600}, modes  # a new folder's files too, the log among them
        recorded = json.loads((data / "server.json").read_text())
        assert psutil.Process(recorded["pid"]).is_running()
        credentials = json.loads((data / "credentials.json").read_text())
        assert credentials["api_key"] in "".join(r.stdout for r in results)
    finally:
        stopped = run_cli("server", "stop", "--data-dir", str(data), cwd=tmp_path)
    assert stopped.stdout.strip() == "annotation server stopped", stopped.stderr
    assert server_processes(data) == [], "nothing orphaned"


def test_stop_and_status_work_when_params_yaml_has_an_error_elsewhere(tmp_path: Path, server_venv: Path) -> None:
    data = data_folder(tmp_path, server_venv)
    port = free_port()
    params = (PROJECT_ROOT / "params.yaml").read_text()
    params = params.replace("data_dir: .argilla", f"data_dir: {data.name}").replace("port: 6900", f"port: {port}")
    (tmp_path / "params.yaml").write_text(params.replace("  limit: null", "  limt: null"))  # a typo in fetch:
    started = run_cli("server", "start", cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert "fetch.limt: unknown key" in started.stderr and "only its argilla: section" in started.stderr
        status = run_cli("server", "status", cwd=tmp_path)
        assert status.returncode == 0 and f"running at http://127.0.0.1:{port}" in status.stdout, status.stderr
        (tmp_path / "params.yaml").write_text("argilla: [not, a, mapping\n")  # now not even YAML
        by_folder = run_cli("server", "status", "--data-dir", str(data), cwd=tmp_path)
        assert by_folder.returncode == 0, by_folder.stderr
    finally:
        stopped = run_cli("server", "stop", "--data-dir", str(data), cwd=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "annotation server stopped", stopped.stderr
    assert server_processes(data) == []


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()
    for connection in held:
        connection.close()


def test_a_port_held_by_something_else_is_named_at_once(
    tmp_path: Path, server_venv: Path, silent_listener: int
) -> None:
    data = data_folder(tmp_path, server_venv)
    began = time.monotonic()
    result = run_cli("server", "start", "--data-dir", str(data), "--port", str(silent_listener), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"llm-feedback: error: port {silent_listener} is in use by something that is not Argilla; "
        "use --port or argilla.port"
    )
    assert time.monotonic() - began < 30
    assert server_processes(data) == [] and not (data / "server.json").exists()


def test_a_hosted_url_that_accepts_and_never_answers_fails_in_seconds(tmp_path: Path, silent_listener: int) -> None:
    params = (
        (PROJECT_ROOT / "params.yaml").read_text().replace("url: local", f"url: http://127.0.0.1:{silent_listener}")
    )
    (tmp_path / "params.yaml").write_text(params)
    env = {**os.environ, "ARGILLA_API_KEY": "owner.key.that.is.long.enough"}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "llm_feedback.cli", "annotators", "add", "rater"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"llm-feedback: error: http://127.0.0.1:{silent_listener} accepts connections but did not answer within 5 s: "
        "is it Argilla? (check argilla.url, or argilla.port for the embedded server)"
    )
    assert elapsed < 15, elapsed


@pytest.mark.parametrize("damage", ["not json", "{}", '{"username": "owner", "password": 3, "api_key": "x"}'])
def test_corrupt_credentials_are_one_line_naming_the_file(tmp_path: Path, server_venv: Path, damage: str) -> None:
    data = data_folder(tmp_path, server_venv)
    fd = os.open(data / "credentials.json", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, damage.encode())
    os.close(fd)
    result = run_cli("server", "start", "--data-dir", str(data), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"llm-feedback: error: {data / 'credentials.json'}: not valid credentials (")
    assert "delete it" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert server_processes(data) == []


def test_a_data_folder_that_is_a_file_or_not_writable_is_one_line(open_folder: Path) -> None:
    a_file = open_folder / "argilla"
    a_file.write_text("not a folder")
    result = run_cli("server", "start", "--data-dir", str(a_file), cwd=open_folder)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"llm-feedback: error: {a_file}: not a folder (argilla.data_dir / --data-dir must name a folder)"
    )

    read_only = open_folder / "read-only"
    read_only.mkdir()
    # A read-only mount of the folder, in a mount namespace of this command's own.
    command = [sys.executable, "-m", "llm_feedback.cli", "server", "start", "--data-dir", str(read_only)]
    denied = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"',
            str(read_only),
            *command,
        ],
        cwd=open_folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert denied.returncode == 1, denied.stderr
    assert denied.stderr.startswith(f"llm-feedback: error: {read_only}: not writable as the server's data folder (")
    assert len(denied.stderr.strip().splitlines()) == 1


def test_a_corrupt_database_is_one_line(tmp_path: Path, server_venv: Path) -> None:
    data = data_folder(tmp_path, server_venv)
    (data / "argilla.db").write_bytes(os.urandom(8192))
    result = run_cli("server", "start", "--data-dir", str(data), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "llm-feedback: error: the annotation server exited at start-up: "
        f"{data / 'argilla.db'} is not an SQLite database"
    )
    assert server_processes(data) == [] and not (data / "server.json").exists()
