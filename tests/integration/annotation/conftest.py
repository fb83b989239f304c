"""A real annotation server for the tests in this folder: the embedded server, started once per session the way
`llm-feedback server start` starts it (its own virtualenv, 0600 credentials, loopback, a free port)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_feedback.annotation.embedded import Credentials, EmbeddedServer, start, stop
from llm_feedback.testing.ports import free_port
from tests.integration.annotation.upstream import UpstreamTests


@dataclasses.dataclass
class RunningServer:
    server: EmbeddedServer
    credentials: Credentials

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_key(self) -> str:
        return self.credentials.api_key

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def python(self) -> str:
        return str(self.server.venv / "bin" / "python")

    def restart(self) -> None:
        stop(self.server)
        start(self.server)


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory, server_venv: Path) -> Iterator[RunningServer]:
    """A running server with generated owner credentials, stopped gracefully at the end of the session."""
    server = EmbeddedServer(
        data_dir=tmp_path_factory.mktemp("annotation-server"), port=free_port(), venv_dir=server_venv
    )
    credentials, _ = start(server)
    assert credentials is not None, "a new data folder gets new credentials"
    try:
        yield RunningServer(server, credentials)
    finally:
        stop(server)


@pytest.fixture(scope="session")
def argilla_upstream_tests(tmp_path_factory: pytest.TempPathFactory, server_venv: Path) -> UpstreamTests:
    """argilla-server 2.8.0's own test suite from its sdist, ready to run in the server's venv (about 10 s)."""
    return UpstreamTests.prepare(tmp_path_factory.mktemp("argilla-upstream"), python=server_venv / "bin" / "python")
