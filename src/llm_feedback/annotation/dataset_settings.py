"""The annotation dataset's settings, built from params and the files in `annotation/`, and the comparison with a
dataset already on the server: what can be updated in place, and what Argilla fixes once a dataset is published."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llm_feedback.annotation.side_by_side import RESPONSES, answer_text, template
from llm_feedback.annotation.side_by_side import TITLE as RESPONSES_TITLE
from llm_feedback.errors import InputError
from llm_feedback.params import AnnotationParams, RubricParams
from llm_feedback.rubric import criterion_question, tooltip

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
PREFERENCE_QUESTION, TIE = "preference", "tie"  # annotation.preference: which response is better, or a tie


def response_field(position: int) -> str:
    return f"response_{position}"


def shown_answer(fields: Mapping, position: int) -> str:
    """The text of the answer at `position` in a record's fields as read from the server, in either layout."""
    if RESPONSES in fields:
        return answer_text(fields[RESPONSES] or {}, position)
    return str(fields.get(response_field(position)) or "")


def rated_content(fields: Mapping) -> dict:
    """What annotators rate on a record: the instruction and each answer's text, in either layout. The rest of the
    side-by-side field (each answer's rendering, execution result and the judge's reasoning) is presentation, which
    push may update on a record already answered, as it does metadata and suggestions."""
    if RESPONSES in fields:
        answers = sorted((fields[RESPONSES] or {}).get("answers") or [], key=lambda answer: answer.get("position", 0))
        texts = [answer.get("text") for answer in answers]
    else:
        texts = [fields[key] for key in sorted(k for k in fields if k.startswith("response_"))]
    return {INSTRUCTION: fields.get(INSTRUCTION), "answers": texts}


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
    rating_tooltip: str  # plain text: Argilla shows a question's description as it is
    min_submitted: int
    groups: tuple[str, ...]
    with_executions: bool
    layout: str = "side_by_side"
    scale: tuple[int, int] = (0, 7)
    # annotation.rubric: criteria: (name, title, points, description) of each criterion, asked on its own
    criteria: tuple[tuple[str, str, tuple[int, ...], str], ...] = ()
    preference: bool = False

    @classmethod
    def from_params(
        cls, params: AnnotationParams, *, rubric: RubricParams, responses: int, with_executions: bool
    ) -> DatasetSpec:
        asked = rubric.criteria if params.rubric == "criteria" else []
        return cls(
            responses=responses,
            guidelines=_read_markdown(params.guidelines, "annotation.guidelines"),
            rating_tooltip=tooltip(rubric),
            min_submitted=params.min_submitted,
            groups=tuple(group_names(params)),
            with_executions=with_executions,
            layout=params.layout,
            scale=(rubric.low, rubric.high),
            criteria=tuple((c.name, c.title, tuple(c.points), c.description) for c in asked),
            preference=params.preference,
        )

    def score_questions(self, position: int) -> list[str]:
        """The rating questions of the answer at `position`: its total, or one per criterion (pull adds them up)."""
        if self.criteria:
            return [criterion_question(name, position) for name, *_ in self.criteria]
        return [score_question(position)]

    def preference_options(self) -> dict[str, str]:
        return {**{response_field(i): f"Response {i}" for i in range(1, self.responses + 1)}, TIE: "Tie"}

    def label_options(self) -> dict[str, str]:
        options = {response_field(i): f"Response {i}" for i in range(1, self.responses + 1)}
        options[COMBINATION] = "Combination of both" if self.responses == 2 else "Combination"
        options[NEITHER] = "Neither"
        return options

    def structure(self) -> dict:
        """What Argilla cannot change once the dataset is published: fields, questions, their types and options."""
        fields = [INSTRUCTION] + self.answer_fields()
        questions = [[name, "rating", True, values] for name, values, *_ in self._ratings()]
        if self.preference:
            questions.append([PREFERENCE_QUESTION, "label_selection", True, list(self.preference_options())])
        questions += [
            [CORRECT_QUESTION, "label_selection", False, list(self.label_options())],
            [CORRECTED_RESPONSE, "text", False, None],
            [COMMENTS, "text", False, None],
        ]
        return {"fields": fields, "questions": questions}

    def _ratings(self) -> list[tuple[str, list[int], str, str]]:
        """(name, values, title, tooltip) of every rating question, answer by answer."""
        if not self.criteria:
            values = list(range(self.scale[0], self.scale[1] + 1))
            return [
                (score_question(i), values, f"Rate Response {i}", self.rating_tooltip)
                for i in range(1, self.responses + 1)
            ]
        return [
            (criterion_question(name, i), list(points), f"Response {i}: {title}", description or title)
            for i in range(1, self.responses + 1)
            for name, title, points, description in self.criteria
        ]

    def _correct_title(self) -> str:
        low, high = self.scale
        if (low, high) == (0, 7):  # the code rubric: below 5 nothing runs with a docstring or test worth keeping
            return "If every response scores 4 or less, select a response to correct"
        return "If no response is good enough, select a response to correct"

    def answer_fields(self) -> list[str]:
        """Where the answers are: one custom field of them all (side by side), or a text field each (stacked)."""
        if self.layout == "side_by_side":
            return [RESPONSES]
        return [response_field(i) for i in range(1, self.responses + 1)]

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
                    **({"template": template()} if self.layout == "side_by_side" else {}),
                    "min_submitted": self.min_submitted,
                },
                sort_keys=True,
            )
        )

    def build(self):  # -> argilla.Settings
        import argilla as rg

        fields = [rg.TextField(name=INSTRUCTION, title="Instruction", use_markdown=True)]
        if self.layout == "side_by_side":
            fields.append(
                rg.CustomField(name=RESPONSES, title=RESPONSES_TITLE, template=template(), advanced_mode=True)
            )
        else:
            fields += [
                rg.TextField(name=response_field(i), title=f"Response {i}", use_markdown=True)
                for i in range(1, self.responses + 1)
            ]
        questions: list = [
            rg.RatingQuestion(name=name, title=title, description=description, values=values, required=True)
            for name, values, title, description in self._ratings()
        ]
        if self.preference:
            questions.append(
                rg.LabelQuestion(
                    name=PREFERENCE_QUESTION,
                    title="Which response is better?",
                    labels=self.preference_options(),
                    required=True,
                )
            )
        questions += [
            rg.LabelQuestion(
                name=CORRECT_QUESTION,
                title=self._correct_title(),
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
