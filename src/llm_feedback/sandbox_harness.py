"""Runs inside the sandbox process: locks itself down, then runs an answer's code and its tests.

Started as `python -I sandbox_harness.py` in an empty working directory with a scrubbed environment. It reads its job
(JSON) from stdin, then, before any untrusted line runs:
1. moves into a new network namespace (only a loopback interface, down) when the kernel allows it;
2. sets resource limits (CPU seconds, address space, file size, processes, no core dumps);
3. drops root to the job's unprivileged uid, when started as root;
4. installs an audit hook (PEP 578, which cannot be removed) that refuses sockets, new processes, signals,
   ctypes, and file writes outside the working directory, and reads of home folders and other processes' /proc.
The result goes to stdout as one line after a per-job token. This file imports only the standard library: it must
not load the pipeline into the process that runs untrusted code.
"""

import ast
import json
import os
import resource
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
BLOCKED_EVENTS = {
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function",
    "os.startfile", "webbrowser.open", "os.setuid", "os.setgid", "resource.setrlimit", "resource.prlimit",
}
PATH_EVENTS = {  # event -> positions of path arguments that must stay inside the working directory
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
    "os.symlink": (0, 1), "os.link": (0, 1), "os.truncate": (0,), "os.chdir": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,), "shutil.copytree": (1,),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PRIVATE_READS = ("/root", "/home", "/proc", "/run", "/var")
PUBLIC_PROC = ("/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys")


def isolate_network(job):
    """A network namespace of our own: as root directly; otherwise inside a fresh user namespace."""
    import ctypes  # before the audit hook, which forbids ctypes afterwards

    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    return libc.unshare(flags) == 0


def limit_resources(limits):
    for name, value in (("RLIMIT_CPU", limits["cpu_s"]), ("RLIMIT_AS", limits["memory_mb"] * 2**20),
                        ("RLIMIT_FSIZE", limits["file_mb"] * 2**20), ("RLIMIT_NPROC", limits["processes"]),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))


def drop_privileges(uid):
    if os.geteuid() == 0 and uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def install_guard(workdir):
    workdir = os.path.realpath(workdir)

    def inside(path):
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(path))
        return real == workdir or real.startswith(workdir + os.sep)

    python = tuple(os.path.realpath(p) for p in [*sys.path, sys.prefix, sys.base_prefix, sys.exec_prefix] if p)

    def readable(path):
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(path))
        if inside(real) or real.startswith(PUBLIC_PROC) or real.startswith(python):
            return True
        return not real.startswith(PRIVATE_READS)

    def guard(event, args):
        if event in BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (flags or 0) & WRITE_FLAGS
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing outside the working directory: {path}")
            if not writing and not readable(path):
                raise PermissionError(f"sandbox: reading {path} is not allowed")
        elif event in PATH_EVENTS:
            for position in PATH_EVENTS[event]:
                if position < len(args) and args[position] is not None and not inside(args[position]):
                    raise PermissionError(f"sandbox: {event} outside the working directory")

    sys.addaudithook(guard)


def count_asserts(code):
    try:
        return sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(code)))
    except SyntaxError:
        return 0


def run(job):
    """pass / fail / error, with test counts; the answer's own asserts count when the task brings no tests."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    tests = job["tests"]
    own = count_asserts(job["code"]) if not tests else 0
    try:
        exec(compile(job["code"], "answer.py", "exec"), namespace)
    except AssertionError as e:
        return {"status": "fail", "passed": 0 if own else None, "total": own or None, "error": f"AssertionError: {e}"}
    except BaseException as e:  # noqa: BLE001 - anything the answer raises is its result
        return {"status": "error", "passed": None, "total": len(tests) or own or None, "error": f"{type(e).__name__}: {e}"}
    if not tests:
        return {"status": "pass", "passed": own, "total": own, "error": None}
    passed, first_error = 0, None
    for number, test in enumerate(tests, 1):
        try:
            exec(compile(test, f"test_{number}.py", "exec"), namespace)
            passed += 1
        except BaseException as e:  # noqa: BLE001
            first_error = first_error or f"test {number}: {type(e).__name__}: {e}"
    status = "pass" if passed == len(tests) else "fail"
    return {"status": status, "passed": passed, "total": len(tests), "error": first_error}


def main():
    job = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)
    token = job.pop("token")
    network_isolated = isolate_network(job)
    limit_resources(job["limits"])
    drop_privileges(job.get("uid"))
    if job.get("guard", True):
        install_guard(os.getcwd())
    result = run(job)
    result["network_isolated"] = network_isolated
    sys.stdout.flush()
    sys.__stdout__.write("\n" + token + json.dumps(result) + "\n")
    sys.__stdout__.flush()
    os._exit(0)  # no atexit handlers or finalizers from the answer's code


if __name__ == "__main__":
    main()
