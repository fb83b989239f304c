"""`llm-feedback server start|stop|status` as a user runs it: a real argilla-server process on loopback."""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

import pytest

from llm_feedback.annotation.embedded import EmbeddedServer, ensure_venv
from llm_feedback.testing.ports import free_port
from tests.project import run_cli

pytestmark = pytest.mark.slow


def test_start_status_stop_restart(tmp_path: Path, server_venv: Path) -> None:
    data = tmp_path / "argilla"
    port = str(free_port())
    # The server venv is shared by the test session; point the data folder's venv at it.
    data.mkdir()
    (data / "venv").symlink_to(server_venv)
    common = ("--data-dir", str(data), "--port", port)

    first = run_cli("server", "start", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    credentials = json.loads((data / "credentials.json").read_text())
    assert stat.S_IMODE((data / "credentials.json").stat().st_mode) == 0o600
    assert f"annotation server running at http://127.0.0.1:{port}" in first.stdout
    assert credentials["api_key"] in first.stdout and credentials["password"] in first.stdout  # shown once
    assert credentials["password"] not in {"1234", "12345678", "argilla.apikey"}

    try:
        again = run_cli("server", "start", *common, cwd=tmp_path)
        assert again.returncode == 0
        assert again.stdout.strip() == f"annotation server already running at http://127.0.0.1:{port}"

        status = run_cli("server", "status", "--data-dir", str(data), cwd=tmp_path)
        assert status.returncode == 0
        assert (
            f"running at http://127.0.0.1:{port}: pid " in status.stdout
            and "argilla 2.8.0, 0 datasets" in status.stdout
        )

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/workspaces",
            data=b'{"name": "team"}',
            method="POST",
            headers={"X-Argilla-Api-Key": credentials["api_key"], "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
    finally:
        stopped = run_cli("server", "stop", "--data-dir", str(data), cwd=tmp_path)
    assert stopped.stdout.strip() == "annotation server stopped"
    down = run_cli("server", "status", "--data-dir", str(data), "--port", port, cwd=tmp_path)
    assert down.returncode == 3 and "not running" in down.stdout

    restarted = run_cli("server", "start", *common, cwd=tmp_path)
    try:
        assert restarted.returncode == 0, restarted.stderr
        assert credentials["api_key"] not in restarted.stdout + restarted.stderr  # only the first start shows it
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/me/workspaces", headers={"X-Argilla-Api-Key": credentials["api_key"]}
            ),
            timeout=10,
        ) as response:
            assert [w["name"] for w in json.loads(response.read())["items"]] == ["team"]  # data survived the restart
    finally:
        run_cli("server", "stop", "--data-dir", str(data), cwd=tmp_path)
    log = (data / "server.log").read_text()
    assert credentials["api_key"] not in log and credentials["password"] not in log


def test_refuses_a_non_loopback_address_without_the_flag(tmp_path: Path) -> None:
    result = run_cli("server", "start", "--data-dir", str(tmp_path / "a"), "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr and "--allow-remote" in result.stderr
    assert not (tmp_path / "a").exists()


def test_venv_is_reused_when_nothing_changed(server_venv: Path) -> None:
    server = EmbeddedServer(data_dir=server_venv.parent, venv_dir=server_venv)
    assert ensure_venv(server) == server_venv / "bin" / "python"
