"""Any OpenAI-compatible chat server (vLLM, TGI's /v1, Ollama, llama.cpp) over aiohttp, or several replicas of
one, each request sent to the one `llm.replicas` picks.

The `openai` SDK was measured at ~1.9 ms of client CPU per request (request building, httpx pool, pydantic
parsing), which held 64 concurrent requests to ~0.6 of the ideal rate on 2 cores. One POST of JSON and three fields
read back need none of that: aiohttp alone costs ~0.2 ms per request.
"""

from __future__ import annotations

import json

import aiohttp

from llm_feedback.llm.base import Completion, PermanentError, Request, TransientError, parse_retry_after
from llm_feedback.llm.replicas import Replicas
from llm_feedback.llm.replies import parse_chat
from llm_feedback.params import ModelSpec
from llm_feedback.secrets import scrub

RETRYABLE_STATUS = {408, 409, 429}


class OpenAIBackend:
    def __init__(
        self,
        spec: ModelSpec,
        timeout_s: float,
        *,
        api_key: str | None = None,
        rest_s: float = 1.0,
        rest_max_s: float = 60.0,
    ) -> None:
        """`rest_s`, doubling up to `rest_max_s`: how long a failing replica is left alone when base_url lists several
        (the stages pass generate.backoff_initial_s and backoff_max_s: a replica is retried as a request is)."""
        urls = [f"{url.rstrip('/')}/chat/completions" for url in spec.base_urls]
        self._replicas = Replicas(urls, rest_s=rest_s, rest_max_s=rest_max_s)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._model = spec.adapter or spec.model  # a server such as vLLM serves a LoRA adapter under its own name
        self._session: aiohttp.ClientSession | None = None

    async def complete(self, request: Request) -> Completion:
        if self._session is None:
            # No connection cap here: the runner bounds requests in flight.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=self._timeout)
        gen = request.generation
        body = {
            "model": self._model,
            "messages": request.messages,
            "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "seed": gen.seed,
            "stop": gen.stop or None,
        }
        if request.json_schema is not None:
            body["response_format"] = {"type": "json_object"}  # the mode OpenAI, vLLM, Ollama and llama.cpp share
        async with self._replicas.use(id(request)) as url:  # the runner retries the same Request object
            try:
                async with self._session.post(url, json=body, headers=self._headers) as response:
                    payload = await response.read()
                    if response.status >= 400:
                        message = f"HTTP {response.status}: {_error_message(payload)}"
                        if response.status in RETRYABLE_STATUS or response.status >= 500:
                            raise TransientError(message, parse_retry_after(response.headers.get("Retry-After")))
                        raise PermanentError(message)
            except TimeoutError:
                raise TransientError("timed out") from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                raise TransientError(f"connection failed: {e or type(e).__name__}") from None
        return parse_chat(payload).completion()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error_message(payload: bytes) -> str:
    """The servers disagree on the error shape: {"error": {"message"}}, {"error": "..."}, {"message"}, {"detail"}.
    Scrubbed before it is cut short, so no part of a key the server echoes survives."""
    return scrub(_error_text(payload))[:200]


def _error_text(payload: bytes) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if value:
                return str(value)
    return str(data)
