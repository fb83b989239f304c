"""What an annotator's response may hold, by the dataset's settings: a score on the rating scale, one of the three
response statuses, and, for "which response to correct", one of the options shown. pull checks the values the server
returns and analyze the rows of the annotations artifact, both with these rules, so a value outside them never
reaches a metric or the training data."""

from __future__ import annotations

from llm_feedback.annotation.dataset_settings import COMBINATION, MAX_RATING, MIN_RATING, NEITHER, response_field

STATUSES = ("submitted", "draft", "discarded")
SCALE = range(MIN_RATING, MAX_RATING + 1)
OTHER_OPTIONS = (COMBINATION, NEITHER)  # the options of to_correct besides the responses themselves


def score_problem(question: str, value: object) -> str | None:
    if value is None or (type(value) is int and value in SCALE):
        return None
    return f"{question} is {value!r:.40}, not a score on the {MIN_RATING}-{MAX_RATING} scale"


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
