"""Elasticsearch's `simple_query_string` syntax, translated to an SQLite FTS5 MATCH expression.

The UI passes the user's text straight to Elasticsearch (commons.py: `default_operator: AND`), so the same operators
mean the same here: `+` and, `|` or, `-` not, `( )` grouping, `"..."` phrases (`"..."~N`: words within N), `term*`
prefix, `\\` escapes; bare terms are joined by AND. Like Lucene's SimpleQueryParser, operators have no precedence:
clauses fold left to right (`a | b c` is `(a OR b) AND c`). Fuzziness (`term~N`) is accepted and ignored.

FTS5 has limits a long query meets: its parser holds about 95 open parentheses (about 32 on NOT's right side) and
SQLite 3.45+ refuses expressions nested more than 256 deep. So parsing and compiling use no recursion, parentheses
appear only where FTS5's precedence needs them, deeper parts go first and off NOT's right side; a query still too
deep raises QueryTooComplex, a one-line ValueError (the planner raises it too when FTS5's parser overflows).
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


MAX_DEPTH = 256
"""How deeply a compiled expression's operators may nest (FTS5 merges an AND or OR into its parent of the same kind;
each NOT is a level): SQLite 3.45 and later refuse deeper trees ("fts5 expression tree is too large"), and older
versions walk them on the C stack (a chain of 100,000 NOTs crashes the process)."""

FTS5_TOO_DEEP = "fts5: parser stack overflow"
"""What FTS5 says when an expression opens more parentheses than its parser holds (about 95, 32 on NOT's right)."""


class QueryTooComplex(ValueError):
    """A text query nested deeper than FTS5 can search (Argilla answers a ValueError with HTTP 422)."""

    def __init__(self) -> None:
        super().__init__(
            "text query too complex: its groups and alternating operators (| + -) nest too deeply; simplify it"
        )


def parse(text: str) -> Node | None:
    """The query tree, or None when nothing searchable is left (Elasticsearch then matches no record)."""
    return _Parser(text).parse()


def compile_query(text: str, columns: list[str] | None = None) -> Compiled | None:
    """FTS5 MATCH text for `text`, restricted to `columns` (FTS5 column names) when given."""
    node = parse(text)
    if node is None:
        return None
    expression, negated = _compile(node)
    printed = _print(expression)
    if columns:
        printed = f"{{{' '.join(columns)}}} : ({printed})"
    return Compiled(printed, negated)


@dataclasses.dataclass
class _Group:
    """The clauses of one ( ... ) folded so far: `nodes` joined by `op` (a list, so a long fold stays linear), and
    the operator and negations waiting for the next clause."""

    nodes: list[Node] = dataclasses.field(default_factory=list)
    op: str | None = None
    operator: str | None = None
    negations: int = 0

    def add(self, branch: Node | None) -> None:
        if branch is not None:
            if self.negations % 2 == 1:
                branch = branch.node if isinstance(branch, Not) else Not(branch)
            op = self.operator or "AND"
            if len(self.nodes) == 1 and isinstance(self.nodes[0], Bool) and self.nodes[0].op == op:
                self.nodes = list(self.nodes[0].nodes)  # "(a | b) | c" is a | b | c
            elif len(self.nodes) > 1 and op != self.op:
                self.nodes = [self.top]
            self.nodes.append(branch)
            self.op = op if len(self.nodes) > 1 else None
            self.operator = None
        self.negations = 0

    @property
    def top(self) -> Node | None:
        if len(self.nodes) > 1:
            return Bool(self.op, tuple(self.nodes))
        return self.nodes[0] if self.nodes else None


class _Parser:
    """Left to right with a stack of open groups (no recursion: a query may open any number of parentheses)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0

    def parse(self) -> Node | None:
        groups = [_Group()]
        text = self.text
        while self.index < len(text):
            char = text[self.index]
            group = groups[-1]
            if char in "()+|-" or char in _WHITESPACE:
                self.index += 1
                if char == "(":
                    groups.append(_Group())
                elif char == ")" and len(groups) > 1:  # an unbalanced ")" is ignored, as Lucene does
                    groups[-2].add(groups.pop().top)
                elif char in "+|" and group.operator is None and group.nodes:
                    group.operator = "AND" if char == "+" else "OR"
                elif char == "-":
                    group.negations += 1
            elif char == '"':
                group.add(self._phrase())
            else:
                group.add(self._term())
        while len(groups) > 1:  # an unclosed "(" closes at the end
            groups[-2].add(groups.pop().top)
        return groups[0].top

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


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


@dataclasses.dataclass(frozen=True)
class _Expr:
    """An FTS5 expression being built: a leaf (`text`: a word, prefix, phrase or NEAR group) or `op` over `parts`
    ("NOT" is binary: parts[0] NOT parts[1]). `depth` is how deeply its operators nest, `size` how many leaves it
    prints."""

    op: str = ""
    parts: tuple[_Expr, ...] = ()
    text: str = ""
    depth: int = 0
    size: int = 1


_BINDING = {"OR": 1, "AND": 2, "NOT": 3, "": 4}  # FTS5: NOT binds tighter than AND, AND than OR; all fold left
_COPYABLE = 8  # leaves a rewrite may print twice (to move a deeper part out of NOT's right side)


@dataclasses.dataclass(frozen=True)
class _Fold:
    """A step after a node's parts are compiled: "AND"/"OR" combine the last `count` results, "NOT" flips the last."""

    op: str
    count: int = 1


def _compile(root: Node) -> tuple[_Expr, bool]:
    """(expression, negated): FTS5 has no unary NOT, so a query may compile to the complement of its expression.
    Iterative (parts first, then their fold), as a query may nest any number of groups."""
    results: list[tuple[_Expr, bool]] = []
    todo: list[Node | _Fold] = [root]
    while todo:
        item = todo.pop()
        if isinstance(item, _Fold):
            if item.op == "NOT":
                expression, negated = results.pop()
                results.append((expression, not negated))
                continue
            parts = results[-item.count :]
            del results[-item.count :]
            expression, negated = _fold(item.op, parts)
            if expression.depth > MAX_DEPTH:
                raise QueryTooComplex()
            results.append((expression, negated))
        elif isinstance(item, Not):
            todo += [_Fold("NOT"), item.node]
        elif isinstance(item, Bool):
            todo += [_Fold(item.op, len(item.nodes)), *reversed(item.nodes)]
        else:
            results.append((_leaf(item), False))
    return results[0]


def _leaf(node: Term | Phrase) -> _Expr:
    if isinstance(node, Phrase):
        if node.slop:  # Lucene's slop lets the words move apart: FTS5's NEAR with as many words in between
            return _Expr(text=f"NEAR({' '.join(_quote(token) for token in node.tokens)}, {node.slop})")
        return _Expr(text=" + ".join(_quote(token) for token in node.tokens))
    words = [_Expr(text=_quote(token)) for token in node.tokens]
    if node.prefix:
        words[-1] = _Expr(text=words[-1].text + "*")
    return _join("AND", words)


def _fold(op: str, parts: list[tuple[_Expr, bool]]) -> tuple[_Expr, bool]:
    positives = [expression for expression, negated in parts if not negated]
    negatives = [expression for expression, negated in parts if negated]
    if op == "AND":
        # a AND b AND NOT c AND NOT d  ==  (a AND b) NOT (c OR d); with no positive part it is a complement.
        if not negatives:
            return _join("AND", positives), False
        if not positives:
            return _join("OR", negatives), True
        return _subtract(_join("AND", positives), negatives), False
    # a OR b OR NOT c OR NOT d  ==  NOT ((c AND d) NOT (a OR b))
    if not negatives:
        return _join("OR", positives), False
    if not positives:
        return _join("AND", negatives), True
    return _subtract(_join("AND", negatives), positives), True


def _join(op: str, parts: list[_Expr] | tuple[_Expr, ...]) -> _Expr:
    """`op` ("AND" or "OR") over `parts`, flattened, the deepest part first: parentheses then open at the left, where
    FTS5's parser stacks one symbol per parenthesis (about three on NOT's right side)."""
    flat = [inner for part in parts for inner in (part.parts if part.op == op else (part,))]
    if len(flat) == 1:
        return flat[0]
    flat.sort(key=_depth, reverse=True)
    return _Expr(op, tuple(flat), depth=1 + flat[0].depth, size=sum(part.size for part in flat))


def _subtract(left: _Expr, parts: list[_Expr]) -> _Expr:
    """`left` NOT (the shallow parts OR'ed) NOT the deepest part: one NOT for all but the deepest (a chain of NOTs
    nests one level per NOT), which goes last, where `_minus` may move it off NOT's right side."""
    if left.op == "AND":  # a AND b NOT c == a AND (b NOT c): no parentheses around the AND
        *rest, last = left.parts
        return _join("AND", (*rest, _subtract(last, parts)))
    pieces = sorted((piece for part in parts for piece in (part.parts if part.op == "OR" else (part,))), key=_depth)
    *shallow, deepest = pieces
    if shallow:
        left = _minus(left, _join("OR", shallow))
    return _minus(left, deepest)


def _minus(left: _Expr, right: _Expr) -> _Expr:
    """`left` NOT `right`. FTS5's parser stacks about three symbols for each parenthesis on NOT's right side (one on
    the left of an AND or OR): when `right` is (c NOT z), or an AND of such a part and others r, and z is its deepest
    part, z moves out: a NOT (r AND (c NOT z)) == (a NOT (r AND c)) OR (a AND z), printing a (a few words) twice."""
    held = right.parts if right.op == "AND" else (right,)
    deepest, rest = held[0], held[1:]
    if deepest.op == "NOT" and left.size <= _COPYABLE:
        kept, deeper = deepest.parts
        if all(deeper.depth > other.depth for other in (kept, *rest)):
            return _join("OR", (_minus(left, _join("AND", (*rest, kept))), _join("AND", (left, deeper))))
    return _Expr("NOT", (left, right), depth=1 + max(left.depth, right.depth), size=left.size + right.size)


def _depth(expression: _Expr) -> int:
    return expression.depth


def _print(expression: _Expr) -> str:
    """FTS5 text with parentheses only where precedence needs them; iterative, as an expression may nest deeply."""
    out: list[str] = []
    stack: list[tuple[_Expr | str, int]] = [(expression, 0)]  # (piece, the binding it needs to go without parentheses)
    while stack:
        item, need = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif not item.op:
            out.append(item.text)
        else:
            binding = _BINDING[item.op]
            if item.op == "NOT":  # folds left: a NOT on its left needs no parentheses, all but a leaf on its right do
                pieces = [(item.parts[0], binding), (" NOT ", 0), (item.parts[1], _BINDING[""])]
            else:
                pieces = [(item.parts[0], binding)]
                for part in item.parts[1:]:
                    pieces += [(f" {item.op} ", 0), (part, binding)]
            if binding < need:
                pieces = [("(", 0), *pieces, (")", 0)]
            stack.extend(reversed(pieces))
    return "".join(out)
