"""Running code an LLM wrote, without trusting it: a separate process per run, locked down before the code starts.

Each run gets an empty temporary working directory, an environment without any of the user's variables, CPU,
memory, file-size and process limits, a network namespace of its own where the kernel allows it, an unprivileged
uid of its own when the pipeline runs as root, and an audit hook against sockets, subprocesses, signals, ctypes and
writes outside its directory (see `sandbox_harness.py`). A wall-clock timeout kills its whole process group, and,
under root, every process left with its uid. Runs go through a pool no wider than the number of cores.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from llm_feedback.errors import ConfigError

HARNESS = Path(__file__).with_name("sandbox_harness.py")
FIRST_UID = 61_000  # one unprivileged uid per pool slot when running as root: a slot's leftovers are easy to find
STDERR_TAIL_CHARS = 2000
SWEEP_S = 10.0  # how long to keep killing a slot's leftover processes
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10
    wall_s: float = 30.0
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32


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


class Sandbox:
    def __init__(self, limits: Limits, workers: int | None = None, python: str | None = None,
                 audit_guard: bool = True) -> None:
        """`audit_guard=False` leaves only the kernel's protections (namespaces, limits, uid), to test them alone."""
        self.limits = limits
        self.workers = max(1, min(workers or os.cpu_count() or 1, os.cpu_count() or 1))
        if python is not None and not (shutil.which(python) and os.access(shutil.which(python) or "", os.X_OK)):
            raise ConfigError(f"execute.python: {python!r} is not an executable interpreter")
        self.python = python or sandbox_python()
        self.audit_guard = audit_guard

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
        root = os.geteuid() == 0
        uid = FIRST_UID + slot if root else None
        workdir = Path(tempfile.mkdtemp(prefix="llmfb-run-"))
        try:
            if uid is not None:
                os.chown(workdir, uid, uid)
            token = secrets.token_hex(16)
            payload = json.dumps({"token": token, "code": job.code, "tests": list(job.tests), "uid": uid,
                                  "limits": asdict(self.limits), "guard": self.audit_guard})
            environment = {**ENVIRONMENT, "HOME": str(workdir), "TMPDIR": str(workdir)}
            began = time.monotonic()
            with (workdir / ".stdout").open("w+b") as out, (workdir / ".stderr").open("w+b") as err:
                process = subprocess.Popen(
                    [self.python, "-I", "-B", str(HARNESS)], stdin=subprocess.PIPE, stdout=out, stderr=err,
                    cwd=workdir, env=environment, start_new_session=True, close_fds=True,
                )
                timed_out = False
                try:
                    process.communicate(payload.encode(), timeout=self.limits.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_everything(process, uid)
                duration = time.monotonic() - began
                stdout, stderr = _tail(out), _tail(err)
            return _result(process.returncode, timed_out, stdout, stderr, token, duration)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def sandbox_python() -> str:
    """The interpreter for untrusted code. Under root the code runs as an unprivileged uid, which must be able to
    reach the interpreter and its standard library: the pipeline's own when it is, else a system python3 of the
    same version (without the pipeline's packages)."""
    if os.geteuid() != 0:
        return sys.executable
    candidates = [sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    for candidate in filter(None, candidates):
        prefix = _prefix_of(candidate)
        if prefix and _reachable_by_all(Path(candidate)) and _reachable_by_all(prefix):
            return candidate
    raise ConfigError(
        f"the pipeline runs as root with a Python under a private folder ({sys.base_prefix}); the sandbox drops root "
        "before running generated code and needs an interpreter every user can read: set execute.python"
    )


def _prefix_of(python: str) -> Path | None:
    if Path(python).resolve() == Path(sys.executable).resolve():
        return Path(sys.base_prefix)
    try:
        out = subprocess.run([python, "-I", "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


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


def _kill_everything(process: subprocess.Popen, uid: int | None) -> None:
    """The process group, then (as root) anything still alive under the slot's uid, e.g. a forked child that left
    the group: stopped first, so a fork bomb cannot refill the slots it frees, then killed."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if uid is None:
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
        if int(fields.get("Uid", "-1 0").split()[0]) == uid and not fields.get("State", "").strip().startswith(("Z", "X")):
            pids.append(int(entry.name))
    return pids


def _tail(stream) -> str:
    stream.flush()
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - 64_000))
    return stream.read().decode("utf-8", errors="replace")


def _result(returncode: int | None, timed_out: bool, stdout: str, stderr: str, token: str, duration: float) -> Result:
    tail = stderr[-STDERR_TAIL_CHARS:].strip() or None
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return Result("timeout", None, None, duration, tail, None)
    report = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(token):
            report = json.loads(line[len(token):])
            break
    if report is None:
        reason = f"the run ended without a result (exit code {returncode})"
        return Result("error", None, None, duration, _join(tail, reason), None)
    return Result(report["status"], report["passed"], report["total"], duration, _join(tail, report["error"]),
                  report["network_isolated"])


def _join(tail: str | None, error: str | None) -> str | None:
    parts = [p for p in (tail, error) if p]
    return "\n".join(parts)[-STDERR_TAIL_CHARS:] if parts else None
