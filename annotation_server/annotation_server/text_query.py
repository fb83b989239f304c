"""Elasticsearch's `simple_query_string` syntax, translated to an SQLite FTS5 MATCH expression.

The UI passes the user's text straight to Elasticsearch (commons.py: `default_operator: AND`), so the same operators
mean the same here: `+` and, `|` or, `-` not, `( )` grouping, `"..."` phrases (`"..."~N`: words within N), `term*`
prefix, `\\` escapes; bare terms are joined by AND. Like Lucene's SimpleQueryParser, operators have no precedence:
clauses fold left to right (`a | b c` is `(a OR b) AND c`). Fuzziness (`term~N`) is accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import re

_WORD = re.compile(r"\w+")
_WHITESPACE = " \t\n\r"


@dataclasses.dataclass(frozen=True)
class Term:
    tokens: tuple[str, ...]
    prefix: bool = False


@dataclasses.dataclass(frozen=True)
class Phrase:
    tokens: tuple[str, ...]
    slop: int = 0


@dataclasses.dataclass(frozen=True)
class Not:
    node: Node


@dataclasses.dataclass(frozen=True)
class Bool:
    op: str  # "AND" | "OR"
    nodes: tuple[Node, ...]


Node = Term | Phrase | Not | Bool


@dataclasses.dataclass(frozen=True)
class Compiled:
    """An FTS5 expression; `negated` means the query matches every record that the expression does NOT match."""

    expression: str
    negated: bool = False


def parse(text: str) -> Node | None:
    """The query tree, or None when nothing searchable is left (Elasticsearch then matches no record)."""
    node, _ = _Parser(text).parse_until_close(0)
    return node


def compile_query(text: str, columns: list[str] | None = None) -> Compiled | None:
    """FTS5 MATCH text for `text`, restricted to `columns` (FTS5 column names) when given."""
    node = parse(text)
    if node is None:
        return None
    compiled = _compile(node)
    if columns:
        compiled = Compiled(f"{{{' '.join(columns)}}} : ({compiled.expression})", compiled.negated)
    return compiled


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0

    def parse_until_close(self, depth: int) -> tuple[Node | None, bool]:
        top: Node | None = None
        operator: str | None = None
        negations = 0
        text = self.text
        while self.index < len(text):
            char = text[self.index]
            branch: Node | None = None
            if char == "(":
                self.index += 1
                branch, _ = self.parse_until_close(depth + 1)
            elif char == ")" and depth > 0:
                self.index += 1
                return top, True
            elif char == ")":
                self.index += 1  # an unbalanced ")" is ignored, as Lucene does
                continue
            elif char == '"':
                branch = self._phrase()
            elif char == "+":
                if operator is None and top is not None:
                    operator = "AND"
                self.index += 1
                continue
            elif char == "|":
                if operator is None and top is not None:
                    operator = "OR"
                self.index += 1
                continue
            elif char == "-":
                negations += 1
                self.index += 1
                continue
            elif char in _WHITESPACE:
                self.index += 1
                continue
            else:
                branch = self._term()
            if branch is None:
                negations = 0
                continue
            if negations % 2 == 1:
                branch = Not(branch)
            top = branch if top is None else _combine(top, branch, operator or "AND")
            operator = None
            negations = 0
        return top, False

    def _phrase(self) -> Node | None:
        self.index += 1  # opening quote
        chars: list[str] = []
        text = self.text
        while self.index < len(text) and text[self.index] != '"':
            if text[self.index] == "\\" and self.index + 1 < len(text):
                self.index += 1
            chars.append(text[self.index])
            self.index += 1
        self.index += 1  # closing quote (or end of text)
        slop = self._number_after_tilde()
        tokens = tuple(_WORD.findall("".join(chars).lower()))
        if not tokens:
            return None
        return Phrase(tokens, slop or 0) if len(tokens) > 1 else Term(tokens)

    def _term(self) -> Node | None:
        chars: list[str] = []
        text = self.text
        while self.index < len(text):
            char = text[self.index]
            if char == "\\" and self.index + 1 < len(text):
                chars.append(text[self.index + 1])
                self.index += 2
                continue
            if char in _WHITESPACE or char in '"|+()':
                break
            if char == "~":
                self._number_after_tilde()
                break
            chars.append(char)
            self.index += 1
        word = "".join(chars)
        prefix = word.endswith("*")
        tokens = tuple(_WORD.findall(word.lower()))
        return Term(tokens, prefix) if tokens else None

    def _number_after_tilde(self) -> int | None:
        if self.index >= len(self.text) or self.text[self.index] != "~":
            return None
        self.index += 1
        start = self.index
        while self.index < len(self.text) and self.text[self.index].isdigit():
            self.index += 1
        return int(self.text[start : self.index]) if self.index > start else None


def _combine(top: Node, branch: Node, op: str) -> Node:
    if isinstance(top, Bool) and top.op == op:
        return Bool(op, top.nodes + (branch,))
    return Bool(op, (top, branch))


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _compile(node: Node) -> Compiled:
    if isinstance(node, Term):
        words = [_quote(token) for token in node.tokens]
        if node.prefix:
            words[-1] += "*"
        return Compiled(words[0] if len(words) == 1 else "(" + " AND ".join(words) + ")")
    if isinstance(node, Phrase):
        if node.slop:  # Lucene's slop lets the words move apart: FTS5's NEAR with as many words in between
            return Compiled(f"NEAR({' '.join(_quote(token) for token in node.tokens)}, {node.slop})")
        return Compiled(" + ".join(_quote(token) for token in node.tokens))
    if isinstance(node, Not):
        inner = _compile(node.node)
        return Compiled(inner.expression, not inner.negated)
    return _compile_bool(node)


def _compile_bool(node: Bool) -> Compiled:
    parts = [_compile(child) for child in node.nodes]
    positives = [f"({part.expression})" for part in parts if not part.negated]
    negatives = [f"({part.expression})" for part in parts if part.negated]
    if node.op == "AND":
        # a AND b AND NOT c AND NOT d  ==  (a AND b) NOT (c OR d); with no positive part it is a complement.
        if not negatives:
            return Compiled(" AND ".join(positives))
        if not positives:
            return Compiled(" OR ".join(negatives), negated=True)
        return Compiled(f"({' AND '.join(positives)}) NOT ({' OR '.join(negatives)})")
    # a OR b OR NOT c OR NOT d  ==  NOT ((c AND d) NOT (a OR b))
    if not negatives:
        return Compiled(" OR ".join(positives))
    if not positives:
        return Compiled(" AND ".join(negatives), negated=True)
    return Compiled(f"({' AND '.join(negatives)}) NOT ({' OR '.join(positives)})", negated=True)
