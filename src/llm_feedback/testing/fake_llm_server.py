"""A fake LLM server on loopback that speaks the OpenAI chat API and TGI's text-generation API, and injects faults.

Tests and benchmarks point real clients (the project's backends, `huggingface_hub.AsyncInferenceClient`, httpx2) at it,
so what is exercised is the client's real HTTP behaviour (retries, timeouts, Retry-After, connection errors), not a
mock of it. It runs its own asyncio loop in a daemon thread, so it keeps serving while the test blocks on a
subprocess (`dvc repro`, a stage), and latency is an `asyncio.sleep`, so one thread serves many slow requests at once.

    with FakeLLMServer(latency_s=0.05) as server:
        server.script = ["429", "500"]              # the next two generation requests fail, then all succeed
        server.fail_marker = {"ALWAYS500": "500"}   # any request whose text contains ALWAYS500 always fails
        server.fail_marker["ODD"] = "list_content"  # ... and one with ODD gets a 200 whose content is a list
        run_stage(base_url=server.url + "/v1")
        assert server.count("/v1/chat/completions") == expected

Endpoints (paths are what the clients post to when given the server's URL):
- `POST /v1/chat/completions`: OpenAI chat completions, non-streaming. The project's `openai` backend with
  `base_url=url + "/v1"`, and `AsyncInferenceClient(model=url)` or `AsyncInferenceClient(base_url=url + "/v1")`
  `.chat_completion(...)`.
- `GET /v1/models`: one model, `fake-model` (never faulted).
- `POST /`: TGI's compat route, answers a one-element list. `AsyncInferenceClient(model=url).text_generation(...)`
  posts here: huggingface_hub uses a URL model verbatim as the request URL.
- `POST /generate`: TGI's native route, answers the bare dict (for `model=url + "/generate"`).

Faults: "429", "500", "400" and "401" answer that status ("401" echoes the request's Authorization header in its
message, as some servers do); "drop" closes the connection without a response; "slow" stalls `slow_s`. The malformed
faults answer 200 with a body a real client parses but cannot use: "list_content" and "object_content" (the answer's
text is a list of content parts or an object), "null_content" and "empty_content", and "text_usage" (a token count
that is a string). On the TGI routes they apply to `generated_text` and `details.generated_tokens`.

Error bodies: OpenAI's shape `{"error": {"message", "type"}}` on the OpenAI routes. On the TGI routes, TGI's own
shape `{"error": str, "error_type": str}` (what a real TGI sends; huggingface_hub turns it into `OverloadedError`,
`ValidationError`, ... instead of a plain `HfHubHTTPError`); set `tgi_errors = False` to get the OpenAI shape there too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self, get_args

from aiohttp import web

Fault = Literal[
    "ok",
    "429",
    "500",
    "drop",
    "400",
    "401",
    "slow",
    "list_content",
    "object_content",
    "null_content",
    "empty_content",
    "text_usage",
]
FAULTS: frozenset[str] = frozenset(get_args(Fault))
MALFORMED = frozenset({"list_content", "object_content", "null_content", "empty_content", "text_usage"})

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
TGI_PATHS = ("/", "/generate")

_OPENAI_ERRORS = {
    "429": ("rate limited", "rate_limit"),
    "500": ("internal server error", "server_error"),
    "400": ("bad request", "invalid_request_error"),
    "401": ("Incorrect API key provided", "invalid_request_error"),
}
# TGI's error_type for each status, as text-generation-inference's router maps its InferError variants.
_TGI_ERRORS = {
    "429": ("Model is overloaded", "overloaded"),
    "500": ("Request failed during generation", "incomplete_generation"),
    "400": ("Input validation error", "validation"),
    "401": ("Unauthorized", "unauthorized"),
}


def malformed(payload: Any, fault: str, tgi: bool) -> Any:
    """A normal answer's body with the fault applied where a client reads the text and the token counts."""
    body = payload[0] if isinstance(payload, list) else payload
    holder, key = (body, "generated_text") if tgi else (body["choices"][0]["message"], "content")
    text = holder[key]
    if fault == "list_content":
        holder[key] = [{"type": "text", "text": text}]
    elif fault == "object_content":
        holder[key] = {"type": "text", "text": text}
    elif fault == "null_content":
        holder[key] = None
    elif fault == "empty_content":
        holder[key] = ""
    elif fault == "text_usage":
        if tgi:
            body.setdefault("details", {})["generated_tokens"] = "many"
        else:
            body["usage"]["prompt_tokens"] = "many"
    return payload


def canned_answer(model: str, instruction: str) -> str:
    """The answer every model gives: deterministic, so tests can predict it; a fenced python block, like a real one."""
    head = " ".join(instruction.split())[:60]
    code = f"# {head}\ndef solution():\n    return {len(instruction)}\n"
    return f"Here is a solution from {model}.\n\n```python\n{code}```\n"


def count_tokens(text: str) -> int:
    """Tokens are whitespace-separated words: crude, but any test can compute it too."""
    return len(text.split())


def generate(
    model: str,
    instruction: str,
    stop: list[str],
    max_tokens: int | None,
    keep_stop: bool,
    answer: Callable[[str, str], str] = canned_answer,
) -> tuple[str, Literal["eos", "stop", "length"]]:
    """Apply stop sequences, then the token limit, to the canned answer.

    The earliest stop sequence wins; OpenAI cuts the text before it, TGI keeps it (`keep_stop`). A limit shorter than
    the text truncates it to that many words joined by single spaces.
    """
    text = answer(model, instruction)
    reason: Literal["eos", "stop", "length"] = "eos"
    hits = [(text.find(s), -len(s), s) for s in stop if s and s in text]
    if hits:
        at, _, seq = min(hits)
        text = text[: at + len(seq)] if keep_stop else text[:at]
        reason = "stop"
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        text, reason = " ".join(words[:max_tokens]), "length"
    return text, reason


def _content_text(content: Any) -> str:
    """A message's text, whether content is a string, OpenAI content parts, or missing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise ValueError(f"stop must be a string or a list of strings, got {value!r}")


class FakeLLMServer:
    """A real HTTP server on 127.0.0.1 with a free port, serving fake LLM answers and scripted faults.

    All attributes may be changed by the test while the server runs: the handlers read them on every request.
    """

    tgi_errors: bool = True  # TGI routes answer faults in TGI's error shape (see the module docstring)

    def __init__(self, latency_s: float = 0.0, retry_after_s: float | None = 0.0, slow_s: float = 30.0) -> None:
        """latency_s delays every normal answer; retry_after_s goes in 429's Retry-After (None: no header); slow_s is
        how long a "slow" fault stalls, long enough to trip any client timeout a test sets."""
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.slow_s = slow_s
        self.script: list[str] = []  # faults for the next generation requests, one each, in arrival order
        self.fail_marker: dict[str, str] = {}  # request text containing a key always gets that fault
        self.answer: Callable[[str, str], str] = canned_answer  # (model, last user text) -> the answer's text
        self.requests: list[dict[str, Any]] = []  # {"path", "body", "headers" (lower-case keys), "fault"}
        self.in_flight = 0  # normal answers being delayed right now
        self.max_in_flight = 0  # the most seen at once: what a client's concurrency limit really allowed
        self._lock = threading.Lock()
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, no trailing slash; only known once the port is bound."""
        if self._url is None:
            raise RuntimeError("FakeLLMServer.url is only known after start()")
        return self._url

    def start(self) -> FakeLLMServer:
        """Bind a free loopback port and serve from a daemon thread, so a hung test can still exit."""
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-llm-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        self._url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; stalled ("slow") handlers are cancelled, not awaited."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._runner = None
        self._url = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_get(MODELS_PATH, self._models)
        for path in TGI_PATHS:
            app.router.add_post(path, self._tgi)
        # No access log (it costs more than the handler); cancel a handler whose client went away (a timed-out
        # "slow" request must not hold a task for slow_s); don't wait for stalled handlers on stop.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        return int(sock.getsockname()[1])

    # ---- inspection ------------------------------------------------------------------------------------------

    def count(self, path: str | None = None, fault: str | None = "ok") -> int:
        """How many requests to `path` got outcome `fault` (None: any), e.g. how many answers a stage paid for."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (path is None or r["path"] == path) and (fault is None or r["fault"] == fault)
            )

    def reset(self) -> None:
        """Forget recorded requests and pending scripted faults, keeping the same list objects."""
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.max_in_flight = 0

    # ---- request handling ------------------------------------------------------------------------------------

    def _choose_fault(self, text: str) -> str:
        """A marker in the text wins (and leaves the script alone); otherwise the next scripted fault, else "ok"."""
        for marker, fault in list(self.fail_marker.items()):
            if marker in text:
                return fault
        with self._lock:
            return self.script.pop(0) if self.script else "ok"

    def _record(self, request: web.Request, body: Any, fault: str) -> None:
        entry = {
            "path": request.path,
            "body": body,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "fault": fault,
        }
        with self._lock:
            self.requests.append(entry)

    @staticmethod
    async def _read_json(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            return None

    def _error(self, request: web.Request, fault: str, tgi: bool, message: str | None = None) -> web.Response:
        default_message, kind = (_TGI_ERRORS if tgi and self.tgi_errors else _OPENAI_ERRORS)[fault]
        message = message or default_message
        if fault == "401":
            message = f"{message}: {request.headers.get('Authorization', '(none)')}"
        if tgi and self.tgi_errors:
            payload: dict[str, Any] = {"error": message, "error_type": kind}
        else:
            payload = {"error": {"message": message, "type": kind}}
        headers = {}
        if fault == "429" and self.retry_after_s is not None:
            seconds = self.retry_after_s
            headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
        return web.json_response(payload, status=int(fault), headers=headers)

    async def _answer(
        self, request: web.Request, body: Any, text: str, tgi: bool, build: Callable[[], Any]
    ) -> web.StreamResponse:
        """Pick the fault, validate, record, answer. `build` raises TypeError or ValueError for a request a server
        would reject."""
        fault = self._choose_fault(text)
        if fault not in FAULTS:
            self._record(request, body, fault)
            return web.json_response({"error": f"FakeLLMServer: unknown fault {fault!r}"}, status=500)
        payload: Any = None
        problem: str | None = None
        if fault in ("ok", "slow") or fault in MALFORMED:
            try:
                payload = build()
            except (TypeError, ValueError) as exc:
                problem = str(exc)
        self._record(request, body, "400" if problem is not None else fault)
        if problem is not None:
            return self._error(request, "400", tgi, problem)
        if fault in MALFORMED:
            return web.json_response(malformed(payload, fault, tgi))
        if fault == "ok":
            self.in_flight += 1  # handlers run on the server's one event loop: no lock needed
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
            finally:
                self.in_flight -= 1
            return web.json_response(payload)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
            return web.json_response(payload)
        if fault == "drop":
            # Close without a byte of response. aiohttp then fails to write the response below with a
            # ConnectionError, which it swallows quietly (no 500, no log), so the client sees a bare disconnect.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        return self._error(request, fault, tgi)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        text = _last_user_text(body)
        return await self._answer(request, body, text, tgi=False, build=lambda: self._chat_payload(body))

    def _chat_payload(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise TypeError("request body must be a JSON object")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise ValueError("model is required")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ValueError("messages must be a non-empty list of objects")
        if body.get("stream"):
            raise ValueError("stream is not supported by FakeLLMServer")
        limit = body.get("max_completion_tokens")
        limit = _optional_int(limit if limit is not None else body.get("max_tokens"), "max_tokens")
        text, reason = generate(
            model, _last_user_text(body), _stop_list(body.get("stop")), limit, keep_stop=False, answer=self.answer
        )
        prompt_tokens = sum(count_tokens(_content_text(m.get("content"))) for m in messages)
        completion_tokens = count_tokens(text)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fake-llm-server",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if reason == "length" else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None, "ok")
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _tgi(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        text = inputs if isinstance(inputs, str) else ""
        compat = request.path == "/"  # TGI's "/" answers a one-element list, "/generate" the bare object
        return await self._answer(request, body, text, tgi=True, build=lambda: self._tgi_payload(body, compat))

    @staticmethod
    def _tgi_payload(body: Any, compat: bool) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            raise TypeError("inputs must be a string")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise TypeError("parameters must be an object")
        if body.get("stream"):
            raise ValueError("stream is not supported by FakeLLMServer")
        inputs: str = body["inputs"]
        limit = _optional_int(params.get("max_new_tokens"), "max_new_tokens")
        text, reason = generate("tgi", inputs, _stop_list(params.get("stop")), limit, keep_stop=True)
        result: dict[str, Any] = {"generated_text": inputs + text if params.get("return_full_text") else text}
        if params.get("details"):
            result["details"] = {
                "finish_reason": {"eos": "eos_token", "stop": "stop_sequence", "length": "length"}[reason],
                "generated_tokens": count_tokens(text),
                "seed": params.get("seed"),
                "prefill": [],
                "tokens": [],
            }
        return [result] if compat else result
