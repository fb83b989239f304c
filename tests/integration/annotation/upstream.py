"""argilla-server 2.8.0's own test suite, run inside the embedded server's venv against our patched code.

The suite ships in the argilla-server sdist (`tests/`), fetched from the registry. It runs as Argilla's CI runs it
(its own conftest, factories and database fixtures, SQLite), with one conftest of ours added under its API tests
(`argilla_api_conftest.py`: no OpenSearch, our speed-ups installed). Its job tests count what lands in rq queues, so
they need a Redis: the system's `redis-server`, or Debian's package unpacked into a temp folder (never installed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

ARGILLA_SERVER = "argilla-server==2.8.0"
# The versions Argilla's own test setup asks for (pyproject.toml: pytest-asyncio ~=0.21.1, factory-boy ~=3.2.1).
TEST_TOOLS = ("pytest==8.3.5", "pytest-asyncio==0.21.2", "pytest-mock==3.14.0", "factory-boy==3.2.1", "Faker==40.63.0")
REDIS_PACKAGES = ("redis-server", "redis-tools", "liblzf1", "libjemalloc2")
API_CONFTEST = Path(__file__).with_name("argilla_api_conftest.py")
LOCK = Path(__file__).resolve().parents[3] / "annotation_server" / "requirements.lock"


class UpstreamTests:
    """The sdist's tests unpacked in `root`, with the test tools `python` lacks installed in `tools`."""

    def __init__(self, root: Path, tools: Path, python: Path) -> None:
        self.root, self.tools, self.python = root, tools, python

    @classmethod
    def prepare(cls, folder: Path, *, python: Path) -> UpstreamTests:
        run([str(python), "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             ARGILLA_SERVER, "--dest", str(folder)])  # fmt: skip
        (sdist,) = folder.glob("argilla_server-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(folder, filter="data")
        (root,) = (path for path in folder.glob("argilla_server-*") if path.is_dir())
        shutil.copyfile(API_CONFTEST, root / "tests" / "unit" / "api" / "conftest.py")
        tools = folder / "tools"
        run([str(python), "-m", "pip", "install", "--quiet", "--target", str(tools),
             "--constraint", str(LOCK), *TEST_TOOLS])  # fmt: skip
        return cls(root, tools, python)

    def tests_named(self, pattern: re.Pattern[str]) -> dict[str, str]:
        """{test name: file relative to the root} for the tests whose name matches `pattern`, read from the sources."""
        found = {}
        for path in sorted((self.root / "tests").rglob("test_*.py")):
            for name in re.findall(r"def (test_\w+)", path.read_text()):
                if pattern.search(name):
                    found[name] = str(path.relative_to(self.root))
        return found

    def run(self, files: list[str], *, keyword: str, env: dict[str, str], data_dir: Path) -> dict[str, str]:
        """Run the tests in `files` selected by `keyword`; {test name: passed/failed/error/skipped}."""
        data_dir.mkdir(parents=True, exist_ok=True)
        report = data_dir / "junit.xml"
        environment = {
            "PATH": os.environ["PATH"],
            "HOME": str(data_dir),
            "PYTHONPATH": str(self.tools),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "ARGILLA_HOME_PATH": str(data_dir),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'argilla.db'}",
            **env,
        }
        result = subprocess.run(
            [str(self.python), "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", "-o", "log_cli=false",
             "-W", "ignore::DeprecationWarning", "-k", keyword, f"--junitxml={report}", *files],
            cwd=self.root, env=environment, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if not report.exists():
            raise RuntimeError(f"Argilla's tests did not run (exit {result.returncode}): {result.stdout[-3000:]}")
        return outcomes(report)


def outcomes(report: Path) -> dict[str, str]:
    found = {}
    for case in ET.parse(report).iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        found[case.get("name")] = next(iter(kinds), "passed")
    return found


def run(command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {(result.stderr or result.stdout)[-2000:]}")


# ---- Redis ----------------------------------------------------------------------------------------------------------


def redis_binary(folder: Path) -> tuple[Path, dict[str, str]]:
    """`redis-server` and the environment it needs: the system's, or Debian's packages unpacked (not installed)."""
    system = shutil.which("redis-server")
    if system:
        return Path(system), {}
    folder.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", "-qq", *REDIS_PACKAGES]
    if subprocess.run(download, cwd=folder, capture_output=True, check=False).returncode != 0:
        run(["apt-get", "update", "-qq"])  # a fresh machine has no package lists yet
        run(download, cwd=folder)
    unpacked = folder / "root"
    for package in sorted(folder.glob("*.deb")):
        run(["dpkg-deb", "--extract", str(package), str(unpacked)])
    libraries = sorted({str(path.parent) for path in unpacked.rglob("*.so*")})
    return unpacked / "usr" / "bin" / "redis-server", {"LD_LIBRARY_PATH": os.pathsep.join(libraries)}


@contextlib.contextmanager
def running_redis(folder: Path, port: int) -> Iterator[str]:
    """A throwaway Redis on loopback (no persistence); yields its URL without a database number."""
    binary, env = redis_binary(folder / "redis")
    process = subprocess.Popen(
        [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {process.poll()})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
