"""Running code an LLM wrote, without trusting it: a separate process per run, locked down before the code starts.

The boundary is the kernel's, set up by bubblewrap (`bwrap`): each run gets namespaces of its own (mount, PID,
network, IPC, UTS, user, with no further user namespaces allowed inside), in which it sees `/usr` and the
interpreter read-only, private tmpfs for its working directory, `/tmp` and `/dev/shm`, its own `/proc`, and none of
the host's files, sockets or processes. Under root it runs as an unprivileged uid of its own per pool slot; CPU,
memory, file-size and process limits apply, and a wall-clock timeout kills it (the PID namespace takes every process
it started along). An audit hook (`sandbox_harness.py`) stays as an extra layer. Where bubblewrap is missing or
cannot create namespaces, runs fall back to a plain child process (its own network namespace, the uid, the limits
and the hook), with one warning saying what is then not contained.

The pipeline judges each result from what the run reports; a test `assert <expression> <op> <literal>` is judged
here, from the expression's value, with the expected value never sent into the sandbox.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from llm_feedback.errors import ConfigError
from llm_feedback.params import ExecuteParams

HARNESS = Path(__file__).with_name("sandbox_harness.py")
BWRAP = "bwrap"
FIRST_UID = 61_000  # one unprivileged uid per pool slot when running as root: a slot's leftovers are easy to find
STDERR_TAIL_CHARS = 2000
SWEEP_S = 10.0  # how long to keep killing a slot's leftover processes
REPORT_FD = 3
WORKDIR = "/sandbox"  # the run's working directory inside bubblewrap's mount namespace
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
OPERATORS: dict[type, Callable[[object, object], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
UNCONTAINED = (
    "generated code runs in a plain child process: it can read every file its uid can read (under root, "
    "any world-readable file such as a 0644 database; otherwise all of yours), see other processes, and "
    "reach Unix sockets on the filesystem; only its uid, network namespace, limits and audit hook stand in "
    "its way (apt-get install bubblewrap to contain it)"
)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one run may use, as the harness applies it; part of each run's hash, so a change reruns the code."""

    cpu_s: int
    wall_s: float
    memory_mb: int
    file_mb: int
    processes: int

    @classmethod
    def of(cls, settings: ExecuteParams) -> Limits:
        """The limits among the execute settings (their defaults live there, with params.yaml's)."""
        return cls(**{field.name: getattr(settings, field.name) for field in fields(cls)})


@dataclass(frozen=True)
class Job:
    key: object  # the caller's handle for this run
    code: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    status: str  # pass | fail | error | timeout
    tests_passed: int | None
    tests_total: int | None
    duration_s: float
    stderr_tail: str | None
    network_isolated: bool | None


@dataclass(frozen=True)
class Check:
    """One test; `expr`, `op` and `expected` are set when the pipeline judges it from the expression's value."""

    source: str
    expr: str | None = None
    op: Callable[[object, object], bool] | None = None
    expected: object = None


class Sandbox:
    def __init__(self, settings: ExecuteParams, *, audit_guard: bool = True, bwrap: str | None = BWRAP) -> None:
        """The limits, workers and interpreter come from the execute settings. `audit_guard=False` leaves only the
        kernel's protections, to test them alone; `bwrap=None` runs without bubblewrap (warned about, as when it is
        missing or fails)."""
        self.limits = Limits.of(settings)
        self.workers = max(1, min(settings.workers or os.cpu_count() or 1, os.cpu_count() or 1))
        self.python = sandbox_python() if settings.python is None else _interpreter(settings.python)
        self.audit_guard = audit_guard
        self.harness = HARNESS.read_text()
        self.mounts = _read_only_mounts(_prefixes(self.python))
        self.bwrap = self._usable_bwrap(bwrap)

    @property
    def contained(self) -> bool:
        """Whether runs get bubblewrap's namespaces (a private filesystem, PID and network namespace)."""
        return self.bwrap is not None

    def run_all(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Result]]:
        """Run jobs on at most `workers` processes at once; yields (job, result) as runs finish."""
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.workers):
            slots.put(slot)

        def one(job: Job) -> tuple[Job, Result]:
            slot = slots.get()
            try:
                return job, self.run(job, slot)
            finally:
                slots.put(slot)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox") as pool:
            for future in as_completed([pool.submit(one, job) for job in jobs]):
                yield future.result()

    def run(self, job: Job, slot: int = 0) -> Result:
        uid = FIRST_UID + slot if os.geteuid() == 0 else None
        checks = [_check(test) for test in job.tests]
        folder = Path(tempfile.mkdtemp(prefix="llmfb-run-"))
        try:
            cwd = WORKDIR if self.bwrap else str(_own_folder(folder / "run", uid))
            began = time.monotonic()
            with (folder / "report").open("w+b") as report, (folder / "stderr").open("w+b") as err:
                payload = json.dumps(
                    {
                        "code": job.code,
                        "limits": asdict(self.limits),
                        "guard": self.audit_guard,
                        "tests": [{"expr": c.expr} if c.expr is not None else {"source": c.source} for c in checks],
                        "report_fd": report.fileno(),
                        "unshare_network": self.bwrap is None,
                        "uid": None if self.bwrap else uid,
                    }
                )
                process, init = self._start(report.fileno(), err, cwd, uid)
                timed_out = False
                try:
                    process.communicate(payload.encode(), timeout=self.limits.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_everything(process, uid, init)
                duration = time.monotonic() - began
                records, stderr = _records(_tail(report, None)), _tail(err, 64_000)
            returncode = process.returncode
            if self.bwrap and 128 < returncode < 128 + signal.NSIG:  # bwrap exits 128+N when its child dies of N
                returncode = 128 - returncode
            return _result(
                returncode, timed_out, records, stderr, job.code, checks, duration, True if self.bwrap else None
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _start(self, report: int, err, cwd: str, uid: int | None) -> tuple[subprocess.Popen, int | None]:
        """The run's process, and with bubblewrap a pidfd for the first process of its PID namespace."""
        options = {
            "stdin": subprocess.PIPE,
            "stdout": subprocess.DEVNULL,
            "stderr": err,
            "env": {**ENVIRONMENT, "HOME": cwd, "TMPDIR": cwd},
            "start_new_session": True,
            "close_fds": True,
        }
        if self.bwrap is None:
            return subprocess.Popen(self._command(self.harness), cwd=cwd, pass_fds=(report,), **options), None
        info, info_write = os.pipe()
        try:
            process = subprocess.Popen(
                self._command(self.harness, info_fd=info_write),
                cwd="/",
                pass_fds=(report, info_write),
                **options,
                **_as_user(uid),
            )
        except BaseException:
            os.close(info)
            raise
        finally:
            os.close(info_write)
        return process, _namespace_init(info)

    def _command(self, harness: str, bwrap: str | None = None, info_fd: int | None = None) -> list[str]:
        python = [self.python, "-I", "-B", "-c", harness]
        bwrap = bwrap or self.bwrap
        if bwrap is None:
            return python
        size = str(2 * self.limits.file_mb * 2**20)
        return [
            bwrap,
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            *self.mounts,
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--size",
            size,
            "--tmpfs",
            "/tmp",
            "--size",
            size,
            "--tmpfs",
            "/dev/shm",
            "--size",
            size,
            "--tmpfs",
            WORKDIR,
            "--chdir",
            WORKDIR,
            "--",
            *python,
        ]

    def _usable_bwrap(self, name: str | None) -> str | None:
        """bubblewrap's absolute path when it can create a sandbox here; otherwise None, after one warning."""
        if name is None:
            return _warn(f"execute: running without bubblewrap: {UNCONTAINED}")
        found = shutil.which(name)
        if found is None:
            return _warn(f"execute: bubblewrap ({name}) is not installed: {UNCONTAINED}")
        found = os.path.abspath(found)
        uid = FIRST_UID if os.geteuid() == 0 else None
        try:
            probe = subprocess.run(
                self._command("pass", found),
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
                cwd="/",
                env=ENVIRONMENT,
                **_as_user(uid),
            )
        except (OSError, subprocess.SubprocessError) as e:
            return _warn(f"execute: bubblewrap ({found}) cannot run ({e}): {UNCONTAINED}")
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
            return _warn(f"execute: bubblewrap ({found}) cannot create a sandbox here ({reason}): {UNCONTAINED}")
        return found


def _as_user(uid: int | None) -> dict:
    """Popen's arguments that start the process as `uid` (its own group, no others); none for None."""
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def _interpreter(python: str) -> str:
    """execute.python's absolute path; `shutil.which` also checks that it is an executable file."""
    found = shutil.which(python)
    if found is None:
        raise ConfigError(f"execute.python: {python!r} is not an executable interpreter")
    return os.path.abspath(found)


def sandbox_python() -> str:
    """The interpreter for untrusted code. Under root the code runs as an unprivileged uid, which must be able to
    reach the interpreter and its standard library: the pipeline's own when it is, else a system python3 of the
    same version (without the pipeline's packages)."""
    if os.geteuid() != 0:
        return sys.executable
    candidates = [sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    for candidate in filter(None, candidates):
        prefixes = _prefixes(candidate)
        if prefixes and all(_reachable_by_all(p) for p in [Path(candidate), *prefixes]):
            return candidate
    raise ConfigError(
        f"the pipeline runs as root with a Python under a private folder ({sys.base_prefix}); the sandbox drops root "
        "before running generated code and needs an interpreter every user can read: set execute.python"
    )


def _prefixes(python: str) -> list[Path]:
    """The interpreter's prefix and base prefix (they differ in a virtualenv); empty when it cannot tell."""
    if python == sys.executable:
        found = [sys.prefix, sys.base_prefix]
    else:
        try:
            out = subprocess.run(
                [python, "-I", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        found = out.split()
    return sorted({Path(p) for p in found if p})


def _read_only_mounts(prefixes: Iterable[Path]) -> list[str]:
    """/usr, the top-level links or folders into it (/bin, /lib, ...), the dynamic linker's cache, and the
    interpreter's prefixes where they are elsewhere."""
    mounts = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            mounts += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            mounts += ["--ro-bind", top, top]
    mounts += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for prefix in prefixes:
        real = prefix.resolve()
        if not real.is_relative_to("/usr"):
            mounts += ["--ro-bind", str(prefix), str(prefix)]
            if real != prefix:
                mounts += ["--ro-bind", str(real), str(real)]
    return mounts


def _own_folder(folder: Path, uid: int | None) -> Path:
    folder.mkdir()
    if uid is not None:
        os.chown(folder, uid, uid)
    return folder


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _reachable_by_all(path: Path) -> bool:
    """Every folder on the way can be entered, and the target read, by any user."""
    path = path.resolve()
    for folder in [*reversed(path.parents), path]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return False
        needed = stat.S_IXOTH if folder.is_dir() else stat.S_IROTH
        if not mode & needed:
            return False
    return True


def _namespace_init(info: int) -> int | None:
    """A pidfd for the first process of the run's PID namespace, from what bubblewrap writes to its --info-fd
    (then closes, or never writes when it fails); None without that process."""
    with os.fdopen(info, "rb") as stream:
        text = stream.read()
    try:
        return os.pidfd_open(int(json.loads(text)["child-pid"]))
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _kill_everything(process: subprocess.Popen, uid: int | None, init: int | None) -> None:
    """With bubblewrap, the first process of the run's PID namespace: when it dies the kernel kills every process
    in the namespace, and bubblewrap exits only once they are all gone. Then the process group, and without
    bubblewrap (as root) anything still alive under the slot's uid, e.g. a forked child that left the group:
    stopped first, so a fork bomb cannot refill the slots it frees, then killed. (The uid sweep would also reach
    another pipeline's runs under the same uid, so it is kept for where there is no PID namespace.)"""
    if init is not None:
        try:
            signal.pidfd_send_signal(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(init)
        try:
            process.wait(timeout=SWEEP_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if uid is None or init is not None:
        return
    deadline = time.monotonic() + SWEEP_S
    while (leftovers := _pids_of(uid)) and time.monotonic() < deadline:
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in leftovers:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        time.sleep(0.02)


def _pids_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is `uid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and not fields.get("State", "").strip().startswith(
            ("Z", "X")
        ):
            pids.append(int(entry.name))
    return pids


def _tail(stream, chars: int | None) -> str:
    stream.flush()
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - chars) if chars else 0)
    return stream.read().decode("utf-8", errors="replace")


def _check(source: str) -> Check:
    """`assert <expression> <op> <literal>` is judged here from the expression's value; anything else in the run."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return Check(source)
    node = tree.body[0] if len(tree.body) == 1 else None
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1):
        return Check(source)
    op = OPERATORS.get(type(node.test.ops[0]))
    try:
        expected = ast.literal_eval(node.test.comparators[0])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return Check(source)
    if op in (operator.is_, operator.is_not) and not any(expected is c for c in (True, False, None)):
        return Check(source)
    expr = ast.get_source_segment(source, node.test.left)
    return Check(source, expr, op, expected) if op and expr else Check(source)


def _records(text: str) -> dict | None:
    """The run's report: one `code` record, at most one record per test, and `done` last; None when it is cut
    short or not what the harness writes (the answer's code wrote to it)."""
    found: dict = {"tests": {}}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict) or found.get("done"):
            return None
        if isinstance(record.get("test"), int) and record["test"] not in found["tests"]:
            found["tests"][record["test"]] = record
        elif "code" in record and "code" not in found:
            found["code"] = record
        elif set(record) == {"network_isolated"}:
            found["network_isolated"] = record["network_isolated"] is True
        elif record == {"done": True}:
            found["done"] = True
        else:
            return None
    return found if found.get("done") and "code" in found else None


def _result(
    returncode: int | None,
    timed_out: bool,
    records: dict | None,
    stderr: str,
    code: str,
    checks: list[Check],
    duration: float,
    isolated: bool | None,
) -> Result:
    tail = stderr[-STDERR_TAIL_CHARS:].strip() or None
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return Result("timeout", None, None, duration, tail, None)
    if records is None:
        reason = f"the run ended without a result (exit code {returncode})"
        return Result("error", None, None, duration, _join(tail, reason), None)
    status, passed, total, error = _verdict(records, code, checks)
    return Result(
        status,
        passed,
        total,
        duration,
        _join(tail, error),
        isolated if isolated is not None else records.get("network_isolated"),
    )


def _verdict(records: dict, code: str, checks: list[Check]) -> tuple[str, int | None, int | None, str | None]:
    """pass / fail / error, with test counts; the answer's own asserts count when the task brings no tests."""
    own = _count_asserts(code) if not checks else 0
    failure = records["code"].get("code")
    if failure is not None:
        if records["code"].get("assertion"):
            return "fail", 0 if own else None, own or None, str(failure)
        return "error", None, len(checks) or own or None, str(failure)
    if not checks:
        return "pass", own, own, None
    passed, first_error = 0, None
    for number, check in enumerate(checks):
        problem = _problem(check, records["tests"].get(number))
        if problem is None:
            passed += 1
        else:
            first_error = first_error or f"test {number + 1}: {problem}"
    return "pass" if passed == len(checks) else "fail", passed, len(checks), first_error


def _problem(check: Check, record: dict | None) -> str | None:
    """Why one test did not pass, or None when it did."""
    if record is None:
        return "no result"
    if record.get("error") is not None:
        return str(record["error"])
    if check.expr is None:
        return None if "error" in record else "no result"
    value = record.get("value")
    if not isinstance(value, str) or len(value) > 100_000:
        return "no value to check"
    try:
        actual = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "a value that could not be read back"
    try:
        ok = check.op(actual, check.expected)
    except Exception as e:  # noqa: BLE001 - e.g. comparing a str with an int
        return f"AssertionError ({type(e).__name__}: {e})"
    return None if ok else f"AssertionError: got {value[:200]}"


def _count_asserts(code: str) -> int:
    try:
        return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(code)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0


def _join(tail: str | None, error: str | None) -> str | None:
    parts = [p for p in (tail, error) if p]
    return "\n".join(parts)[-STDERR_TAIL_CHARS:] if parts else None
