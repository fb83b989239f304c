"""Hugging Face Inference: Inference Providers through `chat_completion`, or a dedicated/TGI endpoint through
`text_generation` with the model's templated prompt, as the reference notebook does."""

from __future__ import annotations

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
)

from llm_feedback.llm.base import Completion, PermanentError, Request, TransientError, cut_at_stop, parse_retry_after
from llm_feedback.llm.replies import parse_chat, parse_tgi
from llm_feedback.params import ModelSpec
from llm_feedback.secrets import scrub

RETRYABLE_STATUS = {408, 409, 429}
# TGI's finish reasons, in OpenAI's words.
FINISH_REASONS = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


class HFBackend:
    def __init__(
        self, spec: ModelSpec, timeout_s: float, *, token: str | None = None, client: AsyncInferenceClient | None = None
    ) -> None:
        if client is None:
            if spec.endpoint_url:
                client = AsyncInferenceClient(model=spec.endpoint_url, token=token, timeout=timeout_s)
            else:
                client = AsyncInferenceClient(provider=spec.provider or "auto", token=token, timeout=timeout_s)
        self._client = client
        self._model = spec.model
        self._raw_text = spec.endpoint_url is not None

    async def complete(self, request: Request) -> Completion:
        try:
            if self._raw_text:
                return await self._text_generation(request)
            return await self._chat_completion(request)
        except (HfHubHTTPError, TextGenerationError) as e:
            raise _classify(e) from None
        except InferenceTimeoutError:
            raise TransientError("timed out") from None
        except httpx2.TransportError as e:
            raise TransientError(f"connection failed: {e}") from None

    async def _chat_completion(self, request: Request) -> Completion:
        gen = request.generation
        response = await self._client.chat_completion(
            request.messages,
            model=self._model,
            max_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=gen.seed,
            stop=gen.stop or None,
            response_format={"type": "json", "value": request.json_schema} if request.json_schema else None,
        )
        return parse_chat(response).completion()

    async def _text_generation(self, request: Request) -> Completion:
        gen = request.generation
        greedy = gen.temperature == 0
        output = await self._client.text_generation(
            request.prompt or "",
            details=True,
            max_new_tokens=gen.max_new_tokens,
            do_sample=not greedy,
            # TGI rejects temperature 0 and top_p 1.0: leave them out for the same meaning.
            temperature=None if greedy else gen.temperature,
            top_p=gen.top_p if gen.top_p < 1.0 else None,
            seed=gen.seed,
            stop=gen.stop or None,
            grammar={"type": "json", "value": request.json_schema} if request.json_schema else None,
        )
        reply = parse_tgi(output)
        text, stopped = cut_at_stop(reply.generated_text or "", gen.stop)
        details = reply.details
        reason = "stop" if stopped else FINISH_REASONS.get(details.finish_reason, details.finish_reason)
        return Completion(
            text=text,
            finish_reason=reason,
            prompt_tokens=len(details.prefill) or None,
            completion_tokens=details.generated_tokens,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _classify(error: HfHubHTTPError | TextGenerationError) -> TransientError | PermanentError:
    """TGI's typed errors (overloaded, validation, ...) wrap the HTTP error that carries the status and headers."""
    http = error if isinstance(error, HfHubHTTPError) else error.__cause__
    response = getattr(http, "response", None)
    # Scrubbed before it is cut short, so no part of a key the server echoes survives.
    text = scrub(str(error)).strip()
    detail = text.splitlines()[0] if text else type(error).__name__
    if response is None:
        transient = isinstance(error, (OverloadedError, IncompleteGenerationError))
        return TransientError(detail) if transient else PermanentError(detail)
    status = response.status_code
    message = f"HTTP {status}: {detail}"[:300]
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientError(message, parse_retry_after(response.headers.get("retry-after")))
    return PermanentError(message)
