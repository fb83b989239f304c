"""The annotation dataset's settings, built from params and the files in `annotation/`, and the comparison with a
dataset already on the server: what can be updated in place, and what Argilla fixes once a dataset is published."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llm_feedback.errors import InputError
from llm_feedback.params import AnnotationParams

MIN_RATING, MAX_RATING = 0, 7
INSTRUCTION = "instruction"
CORRECT_QUESTION = "to_correct"
CORRECTED_RESPONSE = "corrected_response"
COMMENTS = "comments"
GROUP_METADATA = "annotator_group"
SOURCE_METADATA = "source"
# on a record holding a task's current answers when an earlier record of the task was answered with older text
CHANGED_METADATA, CHANGED_MARK = "answers_changed", "yes"
# on a record whose annotators disagree (disagreements.py): an owner filters on it to have them settle it
REVIEW_METADATA, REVIEW_MARK = "needs_review", "yes"
COMBINATION, NEITHER = "combination", "neither"


def response_field(position: int) -> str:
    return f"response_{position}"


def score_question(position: int) -> str:
    return f"score_response_{position}"


def execution_metadata(position: int) -> str:
    return f"execution_response_{position}"


def group_names(params: AnnotationParams) -> list[str]:
    return [f"group-{i + 1}" for i in range(params.groups)] if params.assignment == "metadata" else []


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the dataset's settings depend on, as plain data (hashable into the receipt)."""

    responses: int
    guidelines: str
    rating_tooltip: str
    min_submitted: int
    groups: tuple[str, ...]
    with_executions: bool

    @classmethod
    def from_params(cls, params: AnnotationParams, *, responses: int, with_executions: bool) -> DatasetSpec:
        return cls(
            responses=responses,
            guidelines=_read_markdown(params.guidelines, "annotation.guidelines"),
            rating_tooltip=_read_markdown(params.rating_tooltip, "annotation.rating_tooltip"),
            min_submitted=params.min_submitted,
            groups=tuple(group_names(params)),
            with_executions=with_executions,
        )

    def label_options(self) -> dict[str, str]:
        options = {response_field(i): f"Response {i}" for i in range(1, self.responses + 1)}
        options[COMBINATION] = "Combination of both" if self.responses == 2 else "Combination"
        options[NEITHER] = "Neither"
        return options

    def structure(self) -> dict:
        """What Argilla cannot change once the dataset is published: fields, questions, their types and options."""
        fields = [INSTRUCTION] + [response_field(i) for i in range(1, self.responses + 1)]
        questions = [
            [score_question(i), "rating", True, list(range(MIN_RATING, MAX_RATING + 1))]
            for i in range(1, self.responses + 1)
        ]
        questions += [
            [CORRECT_QUESTION, "label_selection", False, list(self.label_options())],
            [CORRECTED_RESPONSE, "text", False, None],
            [COMMENTS, "text", False, None],
        ]
        return {"fields": fields, "questions": questions}

    def metadata_names(self) -> list[str]:
        names = [SOURCE_METADATA, CHANGED_METADATA, REVIEW_METADATA] + ([GROUP_METADATA] if self.groups else [])
        if self.with_executions:
            names += [execution_metadata(i) for i in range(1, self.responses + 1)]
        return names

    def settings_hash(self) -> str:
        return _sha256(
            json.dumps(
                {
                    **self.structure(),
                    "metadata": self.metadata_names(),
                    "guidelines": self.guidelines,
                    "tooltip": self.rating_tooltip,
                    "min_submitted": self.min_submitted,
                },
                sort_keys=True,
            )
        )

    def build(self):  # -> argilla.Settings
        import argilla as rg

        fields = [rg.TextField(name=INSTRUCTION, title="Instruction", use_markdown=True)]
        fields += [
            rg.TextField(name=response_field(i), title=f"Response {i}", use_markdown=True)
            for i in range(1, self.responses + 1)
        ]
        questions = [
            rg.RatingQuestion(
                name=score_question(i),
                title=f"Rate Response {i}",
                description=self.rating_tooltip,
                values=list(range(MIN_RATING, MAX_RATING + 1)),
                required=True,
            )
            for i in range(1, self.responses + 1)
        ]
        questions += [
            rg.LabelQuestion(
                name=CORRECT_QUESTION,
                title="If every response scores 4 or less, select a response to correct",
                labels=self.label_options(),
                required=False,
            ),
            rg.TextQuestion(
                name=CORRECTED_RESPONSE,
                title="Corrected response",
                description="Complete, runnable code in a ```python block, with a docstring and a test.",
                use_markdown=True,
                required=False,
            ),
            rg.TextQuestion(
                name=COMMENTS, title="Comments", description="What is wrong, in a few words.", required=False
            ),
        ]
        metadata = [
            rg.TermsMetadataProperty(name=SOURCE_METADATA, title="Source dataset"),
            rg.TermsMetadataProperty(
                name=CHANGED_METADATA, title="Answers changed after rating", options=[CHANGED_MARK]
            ),
            rg.TermsMetadataProperty(name=REVIEW_METADATA, title="Annotators disagree", options=[REVIEW_MARK]),
        ]
        if self.groups:
            metadata.append(
                rg.TermsMetadataProperty(name=GROUP_METADATA, title="Annotator group", options=list(self.groups))
            )
        if self.with_executions:
            metadata += [
                rg.TermsMetadataProperty(
                    name=execution_metadata(i),
                    title=f"Execution of Response {i}",
                    options=["pass", "fail", "error", "timeout", "no_code"],
                )
                for i in range(1, self.responses + 1)
            ]
        return rg.Settings(
            fields=fields,
            questions=questions,
            metadata=metadata,
            guidelines=self.guidelines,
            distribution=rg.TaskDistribution(min_submitted=self.min_submitted),
            allow_extra_metadata=False,
        )


def structure_of(settings) -> dict:
    """The same shape as DatasetSpec.structure, read from a dataset's settings on the server."""
    questions = []
    for question in settings.questions:
        kind = question._model.settings.type
        options = None
        if kind == "rating":
            options = sorted(int(v) for v in question.values)
        elif kind == "label_selection":
            options = list(question.labels)
        questions.append([question.name, kind, bool(question.required), options])
    return {"fields": [f.name for f in settings.fields], "questions": questions}


def describe_structure_change(*, current: dict, wanted: dict) -> str:
    """One readable phrase for what differs (e.g. a third model adds field response_3)."""
    changes = []
    for kind in ("fields", "questions"):
        now = {_name(item): item for item in current[kind]}
        new = {_name(item): item for item in wanted[kind]}
        changes += [f"new {kind[:-1]} {name}" for name in new if name not in now]
        changes += [f"no {kind[:-1]} {name}" for name in now if name not in new]
        changes += [f"{kind[:-1]} {name} changed" for name in new if name in now and now[name] != new[name]]
    return ", ".join(changes) or "order of fields or questions"


def _name(item: str | list) -> str:
    return item if isinstance(item, str) else item[0]


def _read_markdown(path: Path, key: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"{path}: not found ({key})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text ({key})") from None
    if not text:
        raise InputError(f"{path}: empty ({key})")
    return text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
