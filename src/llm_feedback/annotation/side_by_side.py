"""The side-by-side view: a record's K answers in columns (stacked on a narrow screen) in one Argilla custom field,
each rendered from Markdown with its code highlighted, and its execution result and the judge's reasoning folded
under it when they exist.

The answers are rendered here, at push, rather than in the annotator's browser: Argilla serves the field's page no
Markdown or highlighting library (and an annotator's browser may reach nothing but the server), and every answer goes
through the very same renderer (markdown-it-py, a CommonMark-compliant parser, with raw HTML off so an answer cannot
inject markup; Pygments for code), so no model's answer looks better for its fence style. The field's value keeps
each answer's text too, which the server's full-text search indexes and pull reads back to tell which answer a
response was given to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

RESPONSES = "responses"  # the custom field holding every answer
TITLE = "Responses"
_FORMATTER = HtmlFormatter(nowrap=True)


@cache
def template() -> str:
    """The field's template (advanced mode: a script builds the columns from the record, with no template engine to
    fetch and compile on every record), with the highlighting styles inline: the page loads nothing else."""
    page = files("llm_feedback.annotation").joinpath("templates/side_by_side.html").read_text(encoding="utf-8")
    return page.replace("#PYGMENTS#", HtmlFormatter(style="default").get_style_defs(".answer pre"))


def render(text: str) -> str:
    """An answer's Markdown as safe HTML: raw HTML in it is shown as text, code blocks are highlighted."""
    return _markdown().render(text)


def field_value(
    answers: Sequence[str],
    *,
    executions: Sequence[Mapping[str, str] | None],
    rationales: Sequence[str | None],
) -> dict:
    """The custom field's value: per position (1 = Response 1) the answer's text, its HTML and what is folded under
    it. `executions[i]`: {status, tests, stderr} or None; `rationales[i]`: the judge's reasoning or None."""
    return {
        "answers": [
            {
                "position": position,
                "text": text,
                "html": render(text),
                **({"execution": dict(execution)} if execution else {}),
                **({"judge": rationale} if rationale else {}),
            }
            for position, (text, execution, rationale) in enumerate(zip(answers, executions, rationales), 1)
        ]
    }


def answer_text(value: Mapping, position: int) -> str:
    """The text of the answer shown at `position` in a field value read back from the server ("" when absent)."""
    for answer in value.get("answers") or ():
        if answer.get("position") == position:
            return str(answer.get("text") or "")
    return ""


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "highlight": _highlight})


def _highlight(code: str, language: str, _attributes: str) -> str:
    """A fenced block's HTML (markdown-it wraps it in <pre><code>); an unknown or missing language is not guessed,
    so every answer's plain blocks look alike."""
    try:
        lexer = get_lexer_by_name(language.strip().lower() or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return highlight(code, lexer, _FORMATTER)
