"""The judge's replies read: a verdict on the declared rubric, a pairwise preference, or the reason a reply is
neither. Kept apart from judge.py (which brings the request machinery) so push can read the criteria of a verdict
for its suggestions without it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from llm_feedback.params import RubricParams


@dataclass(frozen=True)
class Verdict:
    score: int | None
    rationale: str | None
    error: str | None


def parse_verdict(text: str | None, rubric: RubricParams) -> Verdict:
    """A verdict on the declared rubric from the judge's answer, or the reason it is not one."""
    data, problem = first_json_object(text)
    if data is None:
        return Verdict(None, None, problem)
    for criterion in rubric.criteria:
        value = data.get(criterion.name)
        if not isinstance(value, int) or isinstance(value, bool) or value not in criterion.points:
            allowed = ", ".join(map(str, criterion.points))
            return Verdict(None, None, f"{criterion.name} must be one of {allowed}, got {value!r}")
    total = data.get("total")
    if rubric.criteria:
        parts = sum(data[c.name] for c in rubric.criteria)
        if total != parts:
            return Verdict(None, None, f"total {total!r} is not the sum of the criteria ({parts})")
    elif not isinstance(total, int) or isinstance(total, bool) or not rubric.low <= total <= rubric.high:
        return Verdict(None, None, f"total must be an integer from {rubric.low} to {rubric.high}, got {total!r}")
    rationale = data.get("rationale")
    return Verdict(total, rationale if isinstance(rationale, str) else None, None)


def parse_preference(text: str | None) -> tuple[str | None, str | None]:
    """ "A", "B" or "tie" from a pairwise answer, or (None, the reason)."""
    data, problem = first_json_object(text)
    if data is None:
        return None, problem
    better = data.get("better")
    if better not in ("A", "B", "tie"):
        return None, f"better must be A, B or tie, got {better!r}"
    return better, None


def first_json_object(text: str | None) -> tuple[dict | None, str | None]:
    """The first JSON object in the text (bare, fenced, or after some prose)."""
    if text is None:
        return None, "no answer"
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than Python's stack
            continue
        if isinstance(value, dict):
            return value, None
    snippet = " ".join(text.split())[:80]
    return None, f"no JSON object in the judge's answer: {snippet!r}" if snippet else "an empty answer"
