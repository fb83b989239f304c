"""The sandbox against code that tries to escape: each attempt is contained, recorded with the right status, and the
host and this test process are unaffected. Where the kernel's protections stand alone (audit hook off), they are
tested on their own too."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_feedback.sandbox import FIRST_UID, Job, Limits, Sandbox, _pids_of

SECRET = "sk-sandbox-test-secret-0123456789"
LIMITS = Limits(cpu_s=3, wall_s=6, memory_mb=512, file_mb=4, processes=16)
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


@pytest.fixture(scope="module")
def kernel_only() -> Sandbox:
    return Sandbox(LIMITS, audit_guard=False)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LLMFB_TEST_SECRET", SECRET)
    return SECRET


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server the sandboxed code tries to reach; it records whatever arrives."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            received.append(connection.recv(100) or b"connected")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def run(sandbox: Sandbox, code: str, tests: tuple[str, ...] = ()):
    return sandbox.run(Job("t", code, tests))


def test_a_correct_answer_passes_and_a_wrong_one_fails(sandbox: Sandbox) -> None:
    good = run(sandbox, "def add(a, b):\n    return a + b\n", ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"))
    assert (good.status, good.tests_passed, good.tests_total) == ("pass", 2, 2)
    wrong = run(sandbox, "def add(a, b):\n    return a - b\n", ("assert add(1, 2) == 3", "assert add(1, 0) == 1"))
    assert (wrong.status, wrong.tests_passed, wrong.tests_total) == ("fail", 1, 2)
    assert "test 1: AssertionError" in wrong.stderr_tail
    broken = run(sandbox, "def add(a, b) return", ("assert add(1, 2) == 3",))
    assert broken.status == "error" and "SyntaxError" in broken.stderr_tail
    own = run(sandbox, "def sq(x):\n    return x * x\n\nassert sq(3) == 9\nassert sq(0) == 0\n")
    assert (own.status, own.tests_passed, own.tests_total) == ("pass", 2, 2), "the answer's own asserts as tests"


def test_the_environment_holds_none_of_the_users_variables(sandbox: Sandbox, secret: str) -> None:
    result = run(sandbox, "import os\nprint(os.environ.get('LLMFB_TEST_SECRET'), sorted(os.environ))\n"
                          "assert 'LLMFB_TEST_SECRET' not in os.environ\n"
                          "print(open(f'/proc/{os.getppid()}/environ').read())")
    assert result.status == "error" and "reading /proc/" in result.stderr_tail
    assert secret not in (result.stderr_tail or "")


def test_writing_outside_the_working_directory_is_refused(sandbox: Sandbox, kernel_only: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    for box in (sandbox, kernel_only) if ROOT else (sandbox,):
        result = run(box, f"open({str(target)!r}, 'w').write('out')\n")
        assert result.status == "error" and ("PermissionError" in result.stderr_tail), result.stderr_tail
        assert not target.exists()
    inside = run(sandbox, "open('notes.txt', 'w').write('fine')\nassert open('notes.txt').read() == 'fine'\n")
    assert inside.status == "pass", "its own directory is writable"


@pytest.mark.slow
def test_a_fork_bomb_is_contained(sandbox: Sandbox, kernel_only: Sandbox) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    guarded = run(sandbox, "import os\nwhile True:\n    os.fork()\n")
    assert guarded.status == "error" and "os.fork is not allowed" in guarded.stderr_tail
    if ROOT:  # the process limit and the slot's uid alone: forks fail, and nothing survives the run
        alone = run(kernel_only, bomb)
        assert alone.status == "timeout"
        assert _pids_of(FIRST_UID) == [], "every process of the slot's uid is gone"


def test_allocating_10_gb_fails_inside_the_sandbox_only(sandbox: Sandbox) -> None:
    result = run(sandbox, "block = bytearray(10 * 2**30)\n")
    assert result.status == "error" and "MemoryError" in result.stderr_tail
    assert bytearray(10) == bytearray(10), "this process is fine"


def test_no_network_even_to_a_loopback_server(sandbox: Sandbox, kernel_only: Sandbox,
                                               listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\n"
    guarded = run(sandbox, code)
    assert guarded.status == "error" and "socket." in guarded.stderr_tail
    alone = run(kernel_only, code)
    assert alone.status == "error" and alone.network_isolated is True
    assert "unreachable" in alone.stderr_tail.lower() or "refused" in alone.stderr_tail.lower(), alone.stderr_tail
    time.sleep(0.3)
    assert received == [], "nothing reached the host's loopback"


def test_an_infinite_loop_times_out(sandbox: Sandbox) -> None:
    began = time.monotonic()
    result = run(sandbox, "while True:\n    pass\n")
    assert result.status == "timeout" and time.monotonic() - began < LIMITS.wall_s + 5


def test_killing_the_parent_is_refused(sandbox: Sandbox, kernel_only: Sandbox) -> None:
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n"
    guarded = run(sandbox, code)
    assert guarded.status == "error" and "os.kill is not allowed" in guarded.stderr_tail
    if ROOT:
        alone = run(kernel_only, code)
        assert alone.status == "error" and "PermissionError" in alone.stderr_tail
    assert os.getpid() > 0 and threading.main_thread().is_alive(), "this process survived"


def test_the_pool_runs_no_more_than_the_cores_at_once(tmp_path: Path) -> None:
    workers = os.cpu_count() or 1
    box = Sandbox(LIMITS, workers=64)
    assert box.workers == workers
    code = "import time\nstarted = time.monotonic()\ntime.sleep(0.5)\n"
    jobs = [Job(i, code, ()) for i in range(workers * 2)]
    began = time.monotonic()
    results = list(box.run_all(jobs))
    elapsed = time.monotonic() - began
    assert len(results) == len(jobs) and all(r.status == "pass" for _, r in results)
    assert elapsed >= 1.0, "two rounds of 0.5 s: never more than the cores at once"
