"""Any OpenAI-compatible chat server (vLLM, TGI's /v1, Ollama, llama.cpp) through the official `openai` SDK."""

from __future__ import annotations

import os

import openai

from llm_feedback.llm.base import Completion, PermanentError, Request, TransientError, parse_retry_after
from llm_feedback.params import ModelSpec

RETRYABLE_STATUS = {408, 409, 429}
# Local servers usually need no key, but the SDK insists on one.
NO_KEY = "not-needed"


class OpenAIBackend:
    def __init__(self, spec: ModelSpec, timeout_s: float) -> None:
        api_key = os.environ.get(spec.api_key_env or "OPENAI_API_KEY") or NO_KEY
        # The runner retries (with Retry-After and jitter), so the SDK's own retries are off.
        self._client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self._model = spec.model

    async def complete(self, request: Request) -> Completion:
        gen = request.generation
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=request.messages,
                max_tokens=gen.max_new_tokens,
                temperature=gen.temperature,
                top_p=gen.top_p,
                seed=gen.seed,
                stop=gen.stop or None,
            )
        except openai.APIStatusError as e:
            status = e.status_code
            message = f"HTTP {status}: {_error_message(e)}"
            if status in RETRYABLE_STATUS or status >= 500:
                raise TransientError(message, parse_retry_after(e.response.headers.get("retry-after"))) from None
            raise PermanentError(message) from None
        except openai.APITimeoutError:
            raise TransientError("timed out") from None
        except openai.APIConnectionError as e:
            raise TransientError(f"connection failed: {e.__cause__ or e}") from None
        if not response.choices:
            raise PermanentError("the server answered with no choices")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _error_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
    return str(error.message)[:200]
