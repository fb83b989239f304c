"""Every answer's code fences written one way, so that how a model fences its code cannot sway blind raters, and
the code the sandbox runs is the code annotators see as Python.

Argilla's UI renders an untagged fence as bare inline-code lines while a tagged one gets a highlighted box, and
models fence their code in many ways (```` ``` ````, ```` ```py ````, ```` ```Python3 ````, ```` ~~~ ````, longer
fences). Before push, each answer is normalised:

- a fence holding Python is tagged `python`: one tagged `python`, `py`, `python3` or `py3` in any case, and an
  untagged one whose content looks like Python (see `looks_like_python`);
- an untagged fence that does not look like Python is tagged `text`, so it gets the same box, unhighlighted;
- any other tag is kept, in lower case (only the info string's first word, the one the UI reads);
- every fence is written with backticks, three of them or one more than the longest run of backticks in its
  content (so no line of the content can close it), and so is its closing line;
- nothing else changes: text and code lines stay byte for byte as the model wrote them, an unclosed fence stays
  unclosed (it runs to the end, as CommonMark says), and indented code blocks are left alone (turning them into
  fences would mean re-indenting their lines).

Which lines are fences is decided by a CommonMark parser (markdown-it-py) rather than regular expressions: a fence
may be indented by up to three spaces, sit in a list item or a block quote, be longer than three characters, be
closed only by a run of the same character at least as long, or not be closed at all; backticks inside a line, in
an indented code block or in another fence are not fences. The parser tells those cases apart the way the
Markdown renderer does, and gives each block's content without its container's indentation, which is the code the
sandbox runs (`python_blocks`).
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from functools import cache

PYTHON = "python"
PLAIN = "text"  # the tag an untagged fence that holds no Python gets: a box without highlighting
PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # the line breaks CommonMark knows: \n, \r\n and \r
_BACKTICKS = re.compile(r"`+")
_PROMPT = re.compile(r"[ \t]*>>>(?:[ \t]|$)")
# Lines only Python writes this way: a def or class header ending in a colon, a `from x import y`. They let a block
# that does not parse (a typo, an unfinished example) still count as Python, so it is shown and run as Python.
_PYTHON_LINE = re.compile(
    r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(.*:[ \t]*(?:#.*)?$"
    r"|^[ \t]*class[ \t]+\w+[ \t]*(?:\([^)\n]*\))?[ \t]*:[ \t]*(?:#.*)?$"
    r"|^[ \t]*from[ \t]+\.*[\w.]+[ \t]+import[ \t]+\S",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Fence:
    """One fenced block as the parser read it: `first` and `last` are its opening line and its closing line (None
    when it is not closed), counted from 0; `content` is its text without its container's indentation."""

    first: int
    last: int | None
    marker: str  # the opening run: ``` or ~~~~ ...
    language: str  # the info string's first word, as written ('' when untagged)
    content: str


def fences(text: str) -> list[Fence]:
    """The fenced code blocks of a Markdown text, in order, as a CommonMark renderer reads them."""
    if "```" not in text and "~~~" not in text:
        return []
    found = []
    for token in _parser().parse(text):
        if token.type != "fence" or token.map is None:
            continue
        start, end = token.map
        content = token.content
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        closed = end - start - 2 == lines
        words = token.info.split(maxsplit=1)
        found.append(Fence(start, end - 1 if closed else None, token.markup, words[0] if words else "", content))
    return found


def normalise(answer: str) -> str:
    """The answer as annotators see it: every fence line rewritten as the module docstring says, every other line
    unchanged. Idempotent: a normalised answer normalises to itself."""
    found = fences(answer)
    if not found:
        return answer
    lines = _LINE.findall(answer)
    for fence in found:
        language = shown_language(fence.language, fence.content)
        marker = "`" * max(3, 1 + max((len(run) for run in _BACKTICKS.findall(fence.content)), default=0))
        lines[fence.first] = _rewrite(lines[fence.first], marker + language)
        if fence.last is not None:
            lines[fence.last] = _rewrite(lines[fence.last], marker)
    return "".join(lines)


def shown_language(language: str, content: str) -> str:
    """The tag a fence is shown with: `python` for Python, `text` for an untagged fence that holds none, any
    other tag in lower case. A tag holding a backtick (only a ~~~ fence may have one) cannot follow backticks, so it
    counts as none."""
    tag = language.lower()
    if "`" in tag:
        tag = ""
    if tag in PYTHON_TAGS or (not tag and looks_like_python(content)):
        return PYTHON
    return tag or PLAIN


def looks_like_python(code: str) -> bool:
    """Whether an untagged block holds Python: a REPL or doctest transcript (its first line starts with `>>>`);
    code that parses and does something (at least one statement other than a bare value or an annotation without
    a value, so a block of output such as `42`, `[1, 2]`, `Result: 3` or a shell line such as `ls -la`, which parse
    too, is not taken for code); or a def or class header or a `from ... import` line, so that Python with a
    mistake in it is still shown, and run, as Python."""
    if is_transcript(code):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like warn; they are still Python
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return _PYTHON_LINE.search(code) is not None
    return any(_does_something(node) for node in tree.body)


def is_transcript(code: str) -> bool:
    """A REPL or doctest transcript: its first non-blank line is a `>>>` prompt. It is shown as Python but not run:
    its output lines are not code."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    return _PROMPT.match(first) is not None


def python_blocks(shown: str) -> list[str]:
    """The code of the `python` fences of a normalised answer (`normalise`'s result), in order, transcripts left
    out: what the sandbox runs, read from the text annotators see."""
    return [f.content for f in fences(shown) if f.language == PYTHON and not is_transcript(f.content)]


def _does_something(node: ast.stmt) -> bool:
    if isinstance(node, ast.Expr):
        return isinstance(node.value, (ast.Call, ast.Await))
    if isinstance(node, ast.AnnAssign):
        return node.value is not None
    return True


def _rewrite(line: str, fence: str) -> str:
    """A fence line with its run and info string replaced by `fence`: what comes before the run (indentation, a
    list marker, a block quote's `>`) and the line break stay."""
    start = min(i for i in (line.find("`"), line.find("~")) if i >= 0)
    body = line.rstrip("\r\n")
    return line[:start] + fence + line[len(body) :]


@cache
def _parser():  # -> markdown_it.MarkdownIt
    """A CommonMark block parser: inline rules are off, as only the block structure tells where fences are."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").disable(["inline", "text_join"])
