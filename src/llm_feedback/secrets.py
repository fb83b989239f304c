"""One scrubber for every secret the project holds, so nothing it records (artifacts, caches) or prints carries one.

It knows the values of the project's key variables, of any variable or value the code that uses a secret registers
(a model's `api_key_env`, the embedded server's owner key), and the shapes tokens come in (`Bearer ...`, `hf_...`,
`sk-...`, `user:key@` in a URL, `?api_key=` in a query), so a key that a server echoes back in an error is replaced by
MARKER before anyone records or prints it.
"""

from __future__ import annotations

import functools
import os
import re

MARKER = "[redacted]"
KEY_VARIABLES = ("HF_TOKEN", "OPENAI_API_KEY", "ARGILLA_API_KEY")
# Shorter values ("EMPTY", "none": what keyless local servers are given) protect nothing and would mangle ordinary text.
MIN_LENGTH = 8

_variables: set[str] = set(KEY_VARIABLES)
_values: set[str] = set()

_SHAPES = (
    # An Authorization header's credentials; a token has digits, which keeps "Bearer authentication" readable.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[\w.~+/=-]*\d)[\w.~+/=-]{8,}"), rf"\1\2{MARKER}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MARKER),
    (re.compile(r"\bsk-[\w-]{16,}"), MARKER),
    (re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"), rf"\1{MARKER}@"),
    (re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token)=)[^&#\s]+"), rf"\1{MARKER}"),
)


def register_secret(value: str | None) -> None:
    """A secret value this process holds (a key it read from a file, one it generated), scrubbed from now on."""
    if value and len(value) >= MIN_LENGTH:
        _values.add(value)


def register_secret_variable(name: str | None) -> None:
    """An environment variable whose value is a secret, read at each scrub (so a value set later is covered too)."""
    if name:
        _variables.add(name)


def scrub(text: str, *, shapes: bool = True) -> str:
    """`text` with every known secret value, and (unless `shapes` is off) every token-shaped string, replaced.

    Model answers are scrubbed with `shapes=False`: code may well contain `sk-...` or `Bearer ...` literals, while
    an exact key value in an answer can only be an echo."""
    values = {os.environ.get(name) or "" for name in _variables} | _values
    pattern = _pattern(frozenset(v for v in values if len(v) >= MIN_LENGTH))
    if pattern is not None:
        text = pattern.sub(MARKER, text)
    if shapes:
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=8)
def _pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    """One alternation of the values, longest first, so a key that contains another is replaced whole."""
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
