"""The declared rubric (params.yaml's `rubric:`) in the words each reader takes it in: plain text for Argilla's
tooltips (shown as text, never rendered, so Markdown would show its asterisks) and for the judge's prompt, and the
names of the rating questions that ask for each criterion on its own."""

from __future__ import annotations

from llm_feedback.params import Criterion, RubricParams


def points_text(points: list[int]) -> str:
    """0, 1 or 2; 0 or 3."""
    words = [str(p) for p in points]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def criterion_line(criterion: Criterion) -> str:
    line = f"{criterion.title} ({points_text(criterion.points)})"
    return f"{line}: {criterion.description}" if criterion.description else line


def tooltip(rubric: RubricParams) -> str:
    """The total's rating tooltip: short, so the popup covers little of the form; what earns each point is in the
    guidelines (and in `full_text`)."""
    parts = "; ".join(f"{c.title} {points_text(c.points)}" for c in rubric.criteria)
    scale = f"{rubric.intro.rstrip('.')} ({rubric.low} to {rubric.high})".strip()
    lines = [f"{scale}: {parts}." if parts else f"{scale}."]
    if rubric.note:
        lines.append(rubric.note)
    if rubric.criteria:
        lines.append("The guidelines say what earns each point.")
    return "\n".join(lines)


def full_text(rubric: RubricParams) -> str:
    """The whole rubric in plain text, one criterion a line with what earns its points: the judge's prompt."""
    lines = [f"{rubric.intro} Scale {rubric.low} to {rubric.high}.".strip()]
    lines += [criterion_line(c) for c in rubric.criteria]
    if rubric.note:
        lines.append(rubric.note)
    return "\n".join(lines)


def criterion_question(criterion: str, position: int) -> str:
    """The rating question for one criterion of the answer shown at `position` (annotation.rubric: criteria)."""
    return f"{criterion}_response_{position}"
