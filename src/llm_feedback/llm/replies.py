"""The replies the project accepts from a server, and the reason a reply is not one.

A reply that arrives but is not a usable answer (the text is a list or an object, a token count is not a count, a
field is missing) is a PermanentError naming the field: that row's error, never retried and never cached, so one odd
reply can neither crash a stage nor poison its cache.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_feedback.llm.base import Completion, PermanentError
from llm_feedback.secrets import scrub

Count = Annotated[int, Field(ge=0)]


class _Reply(BaseModel):
    """Strict: no coercion, so `"12"` is not a token count and a list is not text; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Message(_Reply):
    content: str | None = None


class _Choice(_Reply):
    message: _Message
    finish_reason: str | None = None


class _Usage(_Reply):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None


class ChatReply(_Reply):
    """An OpenAI chat completion (also what huggingface_hub's `chat_completion` returns, as a dict)."""

    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None

    def completion(self) -> Completion:
        choice, usage = self.choices[0], self.usage or _Usage()
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )


class _Details(_Reply):
    finish_reason: str
    generated_tokens: Count
    prefill: list[Any] = Field(default_factory=list)


class TGIReply(_Reply):
    """TGI's text generation with `details=True` (huggingface_hub's `TextGenerationOutput`, as a dict)."""

    generated_text: str | None = None
    details: _Details


R = TypeVar("R", bound=_Reply)


def parse_chat(payload: bytes | dict) -> ChatReply:
    return _parse(ChatReply, payload)


def parse_tgi(payload: dict) -> TGIReply:
    return _parse(TGIReply, payload)


def _parse(model: type[R], payload: bytes | dict) -> R:
    try:
        if isinstance(payload, bytes):
            return model.model_validate_json(payload)
        return model.model_validate(payload)
    except ValidationError as e:
        raise PermanentError(f"unusable reply: {_reason(e)}") from None


def _reason(error: ValidationError) -> str:
    """The first problem, led by the field's dotted path (`choices.0.message.content`)."""
    problem = error.errors(include_url=False)[0]
    got = scrub(repr(problem.get("input")))  # before it is cut short: no part of an echoed key survives
    if problem["type"] == "json_invalid":
        return f"not JSON ({got[:80]})"
    where = ".".join(map(str, problem["loc"])) or "the body"
    return f"{where}: {problem['msg']} (got {got[:60]})"
