"""Runs inside the sandbox process: locks itself down, then runs an answer's code and its tests.

Started as `python -I -B -c <this file>` with a scrubbed environment, inside bubblewrap's namespaces (see
`sandbox.py`) or, where bubblewrap is missing, in a plain child process. It reads its job (JSON) from stdin, then,
before any untrusted line runs:
1. without bubblewrap, moves into a new network namespace (only a loopback interface, down) when the kernel allows it;
2. sets resource limits (CPU seconds, address space, file size, processes, no core dumps);
3. without bubblewrap, drops root to the job's unprivileged uid, when started as root;
4. unless the job switches it off, installs an audit hook (PEP 578) that refuses sockets, new processes, signals,
   ctypes, file writes outside the working directory, and reads of home folders and other processes' /proc. Python
   code can get around it; it is an extra layer over the kernel's.
It reports what happened as JSON lines on the job's report descriptor; the pipeline judges the result from them.
A test the pipeline can judge itself arrives as an expression without its expected value: this process only hands
back the expression's value, as plain data, so the answer's code never sees what it is compared with.
This file imports only the standard library: it must not load the pipeline into the process that runs untrusted code.
"""

import json
import os
import resource
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
BLOCKED_EVENTS = {
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.call_function",
    "os.startfile",
    "webbrowser.open",
    "os.setuid",
    "os.setgid",
    "resource.setrlimit",
    "resource.prlimit",
}
PATH_EVENTS = {  # event -> positions of path arguments that must stay inside the working directory
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.symlink": (0, 1),
    "os.link": (0, 1),
    "os.truncate": (0,),
    "os.chdir": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PRIVATE_READS = ("/root", "/home", "/proc", "/run", "/var")
PUBLIC_PROC = ("/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys")
MAX_VALUE_CHARS = 100_000
MAX_DEPTH = 50


def isolate_network():
    """A network namespace of our own: as root directly; otherwise inside a fresh user namespace."""
    import ctypes  # before the audit hook, which forbids ctypes afterwards

    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    return libc.unshare(flags) == 0


def limit_resources(limits):
    for name, value in (
        ("RLIMIT_CPU", limits["cpu_s"]),
        ("RLIMIT_AS", limits["memory_mb"] * 2**20),
        ("RLIMIT_FSIZE", limits["file_mb"] * 2**20),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_CORE", 0),
    ):
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


def plain(value, depth=0):
    """The value as exact built-in types, which the pipeline can read back with ast.literal_eval; anything else
    (an object of the answer's own class, say) raises TypeError."""
    if depth > MAX_DEPTH:
        raise TypeError("a value nested too deeply")
    if value is None or type(value) is bool:
        return value
    for kind in (int, float, complex, str, bytes):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in value.items()}
    for kind in (tuple, list, set, frozenset):
        if isinstance(value, kind):
            return kind(plain(item, depth + 1) for item in value)
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__}, not plain data")


def described(error):
    return f"{type(error).__name__}: {error}"


def run(job, report):
    """The answer's code, then each test in the same namespace, each outcome reported as it happens."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(job["code"], "answer.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - anything the answer raises is its result
        report({"code": described(e), "assertion": isinstance(e, AssertionError)})
        return
    report({"code": None})
    for number, test in enumerate(job["tests"]):
        name = f"test_{number + 1}.py"
        try:
            if "expr" in test:
                value = repr(plain(eval(compile(test["expr"], name, "eval"), namespace)))
                if len(value) > MAX_VALUE_CHARS:
                    raise ValueError(f"a value of {len(value)} characters, too long to check")
                report({"test": number, "value": value})
            else:
                exec(compile(test["source"], name, "exec"), namespace)
                report({"test": number, "error": None})
        except BaseException as e:  # noqa: BLE001
            report({"test": number, "error": described(e)})


def main():
    job = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)  # noqa: SIM115 - for the rest of the process
    fd = job["report_fd"]

    def report(record):
        os.write(fd, (json.dumps(record) + "\n").encode())

    if job["unshare_network"]:
        report({"network_isolated": isolate_network()})
    limit_resources(job["limits"])
    drop_privileges(job.get("uid"))
    if job["guard"]:
        install_guard(os.getcwd())
    run(job, report)
    sys.stdout.flush()
    sys.stderr.flush()
    report({"done": True})
    os._exit(0)  # no atexit handlers or finalizers from the answer's code


if __name__ == "__main__":
    main()
