"""The one interface every backend implements, and the two kinds of failure the runner tells apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llm_feedback.params import GenerationParams


@dataclass(frozen=True, kw_only=True)
class Request:
    """One request, complete: the model (a name under models:), chat messages for chat APIs, the templated prompt
    for raw-text backends, its own sampling settings, and the JSON shape to ask for, if any."""

    model: str
    messages: list[dict[str, str]]
    prompt: str | None
    generation: GenerationParams
    json_schema: dict | None = None  # ask for JSON of this shape where the backend has a JSON or grammar mode


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


class TransientError(Exception):
    """Worth retrying: 429, 5xx, timeouts, dropped connections. `retry_after` is the server's wish, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help (other 4xx, a prompt the model rejects): recorded on the row, the run goes on."""


class Backend(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """OpenAI's meaning of `stop` on every backend: the text ends before the first stop sequence."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare for LLM servers and treated as absent)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
