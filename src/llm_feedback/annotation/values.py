"""What an annotator's response may hold, by the dataset's settings: a score on the rating scale, one of the three
response statuses, and, for "which response to correct", one of the options shown. pull checks the values the server
returns and analyze the rows of the annotations artifact, both with these rules, so a value outside them never
reaches a metric or the training data."""

from __future__ import annotations

from llm_feedback.annotation.dataset_settings import COMBINATION, NEITHER, TIE, response_field
from llm_feedback.params import RubricParams

STATUSES = ("submitted", "draft", "discarded")
OTHER_OPTIONS = (COMBINATION, NEITHER)  # the options of to_correct besides the responses themselves


def rating_scale(rubric: RubricParams) -> range:
    """Every total the rubric allows, low to high."""
    return range(rubric.low, rubric.high + 1)


DEFAULT_SCALE = rating_scale(RubricParams())


def score_problem(question: str, value: object, *, allowed: range | tuple[int, ...] = DEFAULT_SCALE) -> str | None:
    """`allowed`: the total's scale, or one criterion's points."""
    if value is None or (type(value) is int and value in allowed):
        return None
    if isinstance(allowed, range):
        return f"{question} is {value!r:.40}, not a score on the {allowed.start}-{allowed.stop - 1} scale"
    return f"{question} is {value!r:.40}, not one of {', '.join(map(str, allowed))} points"


def preference_problem(question: str, label: object, *, responses: int) -> str | None:
    """`label` as the server holds it: response_1 ... response_N (blinded) or tie."""
    options = [response_field(p) for p in range(1, responses + 1)] + [TIE]
    if label is None or label in options:
        return None
    return f"{question} is {label!r:.40}, not one of {', '.join(options)}"


def status_problem(status: object) -> str | None:
    if status in STATUSES:
        return None
    return f"status {status!r:.40} is not one of {', '.join(STATUSES)}"


def label_problem(question: str, label: object, *, responses: int) -> str | None:
    """`label` as the server holds it: response_1 ... response_N (blinded), combination or neither."""
    options = [response_field(p) for p in range(1, responses + 1)] + list(OTHER_OPTIONS)
    if label is None or label in options:
        return None
    return f"{question} is {label!r:.40}, not one of {', '.join(options)}"


def text_problem(question: str, text: object) -> str | None:
    return None if text is None or isinstance(text, str) else f"{question} is {type(text).__name__}, not text"
