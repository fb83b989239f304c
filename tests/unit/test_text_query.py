"""The search box's query language (Elasticsearch's simple_query_string) parsed and compiled to SQLite FTS5: the
grammar, and the compiled expression run on a real FTS5 table with the server's tokenizer, checked against the same
query evaluated in Python. Whatever a user types, FTS5 sees only quoted words and the compiler's own operators."""

from __future__ import annotations

import inspect
import random
import re
import sqlite3
import sys
from collections.abc import Iterator

import pytest

from annotation_server.text_query import (
    FTS5_TOO_DEEP,
    MAX_DEPTH,
    Bool,
    Compiled,
    Node,
    Not,
    Phrase,
    QueryTooComplex,
    Term,
    compile_query,
    parse,
)
from tests.unit.conftest import imports_beyond_stdlib

# annotation_server.fts.TOKENIZER, written out: fts.py imports SQLAlchemy, which this venv does not hold
TOKENIZER = "unicode61 remove_diacritics 0 tokenchars '_'"
COLUMNS = ("c0", "c1")
VOCABULARY = ["alpha", "beta", "gamma", "delta", "alp", "al", "or", "not", "near", "and"]  # of the random rows
WORD = re.compile(r"\w+")


def t(*tokens: str, prefix: bool = False) -> Term:
    return Term(tokens, prefix)


def test_the_parser_needs_only_the_standard_library() -> None:
    assert imports_beyond_stdlib("annotation_server.text_query") == set()


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("alpha", t("alpha")),
        ("Alpha BETA", Bool("AND", (t("alpha"), t("beta")))),  # bare terms: default_operator AND
        ("alpha + beta", Bool("AND", (t("alpha"), t("beta")))),
        ("alpha | beta | gamma", Bool("OR", (t("alpha"), t("beta"), t("gamma")))),
        ("alpha|beta", Bool("OR", (t("alpha"), t("beta")))),
        ("alpha -beta", Bool("AND", (t("alpha"), Not(t("beta"))))),
        ("-alpha", Not(t("alpha"))),
        ("--alpha", t("alpha")),
        ("- - -alpha", Not(t("alpha"))),
        # no precedence: clauses fold left to right, as Lucene's SimpleQueryParser does
        ("alpha | beta gamma", Bool("AND", (Bool("OR", (t("alpha"), t("beta"))), t("gamma")))),
        ("alpha beta | gamma", Bool("OR", (Bool("AND", (t("alpha"), t("beta"))), t("gamma")))),
        ("alpha | (beta gamma)", Bool("OR", (t("alpha"), Bool("AND", (t("beta"), t("gamma")))))),
        ("-(alpha | beta) gamma", Bool("AND", (Not(Bool("OR", (t("alpha"), t("beta")))), t("gamma")))),
        ("(alpha | beta) | gamma", Bool("OR", (t("alpha"), t("beta"), t("gamma")))),
        ("alpha | (beta | gamma)", Bool("OR", (t("alpha"), Bool("OR", (t("beta"), t("gamma")))))),
        ("-(-alpha)", t("alpha")),  # a negated negation is the clause itself
        ("-(-(-alpha)) beta", Bool("AND", (Not(t("alpha")), t("beta")))),
        ("((alpha))", t("alpha")),
        ('"alpha beta"', Phrase(("alpha", "beta"))),
        ('"alpha beta"~2', Phrase(("alpha", "beta"), 2)),
        ('"alpha"~2', t("alpha")),
        ('"alpha, Beta!" gamma', Bool("AND", (Phrase(("alpha", "beta")), t("gamma")))),
        ('"unterminated phrase', Phrase(("unterminated", "phrase"))),
        (r'"say \"hi\" now"', Phrase(("say", "hi", "now"))),
        ("alph*", t("alph", prefix=True)),
        ("*alpha", t("alpha")),
        ("alpha~2 beta", Bool("AND", (t("alpha"), t("beta")))),  # fuzziness is accepted and ignored
        ("alpha~ beta", Bool("AND", (t("alpha"), t("beta")))),
        ("foo-bar", t("foo", "bar")),  # "-" negates only at the start of a clause
        ("foo_bar", t("foo_bar")),
        (r"alpha\|beta", t("alpha", "beta")),  # an escaped operator is text
        (r"\-alpha", t("alpha")),
        (r"\(alpha\)", t("alpha")),
        ("ÜNÏCODE Æb", Bool("AND", (t("ünïcode"), t("æb")))),
        # unbalanced parentheses: a stray ")" is ignored, an unclosed "(" closes at the end
        ("alpha)", t("alpha")),
        (") alpha (", t("alpha")),
        ("(alpha | beta", Bool("OR", (t("alpha"), t("beta")))),
        ("((alpha) beta", Bool("AND", (t("alpha"), t("beta")))),
        # an operator with nothing on one side is dropped
        ("| alpha", t("alpha")),
        ("alpha +", t("alpha")),
        ("alpha | | beta", Bool("OR", (t("alpha"), t("beta")))),
        ("alpha -", t("alpha")),
        ("alpha () beta", Bool("AND", (t("alpha"), t("beta")))),
    ],
)
def test_the_grammar(query: str, tree: Node) -> None:
    assert parse(query) == tree


@pytest.mark.parametrize("query", ["", "   ", "*", "-", "+ | -", "()", "(()", '"', '""', '"!?"', "!!! ...", "~2", "\\"])
def test_a_query_without_a_word_searches_nothing(query: str) -> None:
    assert parse(query) is None and compile_query(query) is None


# ---- compiled and run on FTS5 ----


@pytest.fixture(scope="module")
def fts() -> Iterator[tuple[sqlite3.Connection, dict[int, tuple[str, str]]]]:
    rows = [
        ("alpha beta", ""),
        ("alpha x beta", ""),
        ("alpha x y beta", ""),
        ("beta alpha", ""),
        ("alpha", "beta"),
        ("alphabet", ""),
        ("cafe", "café"),
        ("foo bar", "foo_bar"),
        ("alpha or beta", "not near"),
        ("c0 alpha", ""),
        ('say "hi" now', ""),
        ("", ""),
    ]
    rng = random.Random(5)
    rows += [tuple(" ".join(rng.choices(VOCABULARY, k=rng.randint(0, 6))) for _ in COLUMNS) for _ in range(60)]
    db = sqlite3.connect(":memory:")
    db.execute(f'CREATE VIRTUAL TABLE docs USING fts5({", ".join(COLUMNS)}, tokenize="{TOKENIZER}")')
    db.executemany("INSERT INTO docs (rowid, c0, c1) VALUES (?, ?, ?)", [(i, *row) for i, row in enumerate(rows, 1)])
    yield db, dict(enumerate(rows, 1))
    db.close()


def fts_hits(db: sqlite3.Connection, everything: set[int], compiled: Compiled) -> set[int]:
    """What the engine returns: the rows FTS5 matches, or (negated) every other row."""
    found = {rowid for (rowid,) in db.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (compiled.expression,))}
    return everything - found if compiled.negated else found


def holds(node: Node, columns: list[list[str]]) -> bool:
    """The query tree evaluated in Python on one row's tokens, column by column."""
    if isinstance(node, Term):
        *whole, last = node.tokens
        anywhere = {token for column in columns for token in column}
        found_last = any(token.startswith(last) for token in anywhere) if node.prefix else last in anywhere
        return found_last and all(token in anywhere for token in whole)
    if isinstance(node, Phrase):
        size = len(node.tokens)
        if node.slop:  # FTS5 NEAR: the words in any order, at most `slop` other words between them, in one column
            first, second = node.tokens
            return any(
                abs(i - j) - 1 <= node.slop
                for column in columns
                for i, a in enumerate(column)
                for j, b in enumerate(column)
                if a == first and b == second
            )
        return any(tuple(column[i : i + size]) == node.tokens for column in columns for i in range(len(column)))
    if isinstance(node, Not):
        return not holds(node.node, columns)
    results = [holds(child, columns) for child in node.nodes]
    return all(results) if node.op == "AND" else any(results)


def python_hits(rows: dict[int, tuple[str, str]], query: str, columns: list[str] | None) -> set[int]:
    node = parse(query)
    assert node is not None
    wanted = [COLUMNS.index(c) for c in columns] if columns else range(len(COLUMNS))
    return {rowid for rowid, row in rows.items() if holds(node, [WORD.findall(row[i].lower()) for i in wanted])}


def run(fts, query: str, columns: list[str] | None = None) -> set[int]:
    db, rows = fts
    compiled = compile_query(query, columns)
    assert compiled is not None
    return fts_hits(db, set(rows), compiled)


def texts(fts, hits: set[int]) -> set[str]:
    return {" | ".join(fts[1][rowid]).strip(" |") for rowid in hits}


def test_phrases_need_their_words_side_by_side_in_one_field(fts) -> None:
    assert texts(fts, run(fts, '"alpha beta"')) >= {"alpha beta"}
    assert not texts(fts, run(fts, '"alpha beta"')) & {"alpha x beta", "beta alpha", "alpha | beta"}
    assert texts(fts, run(fts, '"say hi now"')) == {'say "hi" now'}


def test_a_slop_lets_the_words_move_apart_in_any_order(fts) -> None:
    one = texts(fts, run(fts, '"alpha beta"~1'))
    assert {"alpha beta", "alpha x beta", "beta alpha"} <= one
    assert not one & {"alpha x y beta", "alpha | beta"}, "two words between, or in two fields, is too far"
    assert "alpha x y beta" in texts(fts, run(fts, '"alpha beta"~2'))


def test_a_prefix_matches_longer_words_and_a_word_only_itself(fts) -> None:
    assert "alphabet" in texts(fts, run(fts, "alph*")) and "alphabet" not in texts(fts, run(fts, "alpha"))
    assert run(fts, "alphabet*") == run(fts, "alphabet")


def test_accents_are_kept_and_underscores_join_words(fts) -> None:
    assert texts(fts, run(fts, "café")) == {"cafe | café"} == texts(fts, run(fts, "cafe"))
    assert run(fts, "café", ["c0"]) == set(), "cafe is not café"
    assert texts(fts, run(fts, "foo_bar")) == {"foo bar | foo_bar"} and run(fts, "foo_bar", ["c0"]) == set()


def test_a_field_restriction_applies_to_negations_too(fts) -> None:
    rows = fts[1]
    beta_in_c1 = {rowid for rowid, row in rows.items() if "beta" in WORD.findall(row[1])}
    assert run(fts, "beta", ["c1"]) == beta_in_c1
    assert run(fts, "-beta", ["c1"]) == set(rows) - beta_in_c1, "records whose c1 lacks the word, whatever c0 holds"
    assert run(fts, "beta", ["c0", "c1"]) == run(fts, "beta")


CASES = [
    "alpha",
    "alpha beta",
    "alpha | beta",
    "alpha -beta",
    "-alpha",
    "-alpha -beta",
    "-alpha | -beta",
    "alpha | -beta",
    "-(alpha beta)",
    "-(alpha | -beta) gamma",
    "gamma (alpha | -beta)",
    "(alpha | beta) -(gamma | -delta)",
    "alpha | beta gamma",
    "-alpha | beta -gamma | delta",
    '"alpha beta" | -gamma',
    "al* -alp*",
    "-(-alpha)",
]


@pytest.mark.parametrize("query", CASES)
def test_negations_and_groups_compile_to_the_same_set_as_the_query(fts, query: str) -> None:
    assert run(fts, query) == python_hits(fts[1], query, None)
    assert run(fts, query, ["c1"]) == python_hits(fts[1], query, ["c1"])


def random_queries(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    pieces = [
        *VOCABULARY,
        "café",
        "foo_bar",
        "al*",
        "alph*",
        "|",
        "+",
        "-",
        "(",
        ")",
        '"alpha beta"',
        '"beta alpha gamma"',
        '"near or"~1',
        "ALPHA",
        r"\-beta",
        "alpha~1",
    ]
    for _ in range(count):
        yield "".join(rng.choice(pieces) + rng.choice(["", " ", " ", "  "]) for _ in range(rng.randint(1, 6)))


def test_random_queries_compile_to_the_same_set_as_the_query(fts) -> None:
    checked = 0
    for query in random_queries(1500, seed=11):
        if parse(query) is None:
            continue
        for columns in (None, ["c0"]):
            assert run(fts, query, columns) == python_hits(fts[1], query, columns), (query, columns)
        checked += 1
    assert checked > 1000


HOSTILE = [
    'alpha" OR "beta',
    '"alpha" OR "beta"',
    'alpha""beta',
    '"""',
    '\\"alpha',
    "alpha\\",
    '"alpha\\"',
    "alpha OR beta",
    "alpha AND NOT beta",
    "NOT alpha",
    "NEAR(alpha beta)",
    "NEAR(alpha beta, 0)",
    "alpha NEAR beta",
    "c0:alpha",
    "c0 : alpha",
    "{c0}: alpha",
    "{c0 c1} : (alpha)",
    "-c1:beta",
    "^alpha",
    "alpha^",
    "alpha + ^beta",
    "*",
    "alpha**",
    "*alpha*",
    "al*pha",
    '"alpha beta"*',
    "(alpha",
    "alpha)",
    "((alpha | beta)",
    "))alpha((",
    ")(",
    "alpha) OR (beta",
    "'; DROP TABLE docs; --",
    "alpha'beta",
    "docs MATCH 'x'",
    "alpha:*",
    "rank:bm25(docs)",
    "alpha\x00beta",
    "alpha\u2028beta",
    "日本語 テキスト",
    "emoji 😀 alpha",
    "ǅ İstanbul ß ﬁ",
    "a\u0301lpha",
    '"alpha beta"~99999999999999999999',
    '"alpha beta"~-1',
    "alpha~-1",
    "+-|-+alpha",
    "||alpha",
    "alpha --beta",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_text_reaches_fts5_only_as_quoted_words(fts, query: str) -> None:
    db, rows = fts
    for columns in (None, ["c1"], ["c0", "c1"]):
        compiled = compile_query(query, columns)
        if compiled is None:
            continue
        outside_quotes = re.sub(r'"(?:[^"]|"")*"', " ", compiled.expression)
        operators = re.sub(r"\{c0 c1\}|\{c[01]\}|NEAR|AND|OR|NOT|,\s*\d+|[()*+:\s]", "", outside_quotes)
        assert operators == "", f"{query!r} put {operators!r} outside the quoted words of {compiled.expression!r}"
        assert fts_hits(db, set(rows), compiled) == python_hits(rows, query, columns)


def containing(rows: dict[int, tuple[str, str]], *words: str) -> set[int]:
    return {rowid for rowid, row in rows.items() if set(words) <= set(WORD.findall(" ".join(row).lower()))}


def test_operators_typed_as_words_are_words(fts) -> None:
    rows = fts[1]
    assert run(fts, "alpha OR beta") == containing(rows, "alpha", "or", "beta"), "OR is the word or, not FTS5's OR"
    assert run(fts, "alpha OR beta") != run(fts, "alpha | beta")
    assert run(fts, "NOT alpha") == containing(rows, "not", "alpha")
    assert run(fts, "NEAR(alpha beta)") == containing(rows, "near", "alpha", "beta")
    assert texts(fts, run(fts, "c0:alpha")) == {"c0 alpha"}, "no column filter: c0 is a word"
    assert run(fts, "^beta") == run(fts, "beta"), "no initial-token anchor"


def test_random_hostile_text_never_makes_an_fts5_syntax_error(fts) -> None:
    db, rows = fts
    rng = random.Random(3)
    alphabet = "ab \"()*+|-~\\^:{},.'\n\t0123456789éß日😀" + "\x00"
    words = ["NEAR", "AND", "OR", "NOT", "c0", "c1", "alpha", "beta", "{c0}", "NEAR(", ",", "*"]
    for _ in range(3000):
        pieces = (rng.choice(alphabet) if rng.random() < 0.7 else rng.choice(words) for _ in range(rng.randint(1, 25)))
        query = "".join(pieces)
        for columns in (None, ["c1"]):
            compiled = compile_query(query, columns)
            if compiled is not None:
                fts_hits(db, set(rows), compiled)  # sqlite3.OperationalError on any FTS5 syntax error


LONG = [
    "alpha | -beta " * 20,
    "alpha | -beta " * 95,
    "alpha | beta gamma " * 50,
    "alpha | beta gamma " * 92,  # as deep as FTS5's parser goes for this fold with a field restriction
    "-(alpha -(beta " * 100,
    "alpha (beta | (gamma -(delta " * 20,
    "alpha " * 1000 + "-beta " * 1000,
    "(" * 20_000 + "alpha",  # deeper than Python's recursion limit: the parser keeps its own stack
    "-(" * 20_001 + "alpha",
]


@pytest.mark.parametrize("query", LONG, ids=[f"{q[:16]}...({len(q)} chars)" for q in LONG])
def test_a_long_query_is_searched_as_written(fts, query: str) -> None:
    for columns in (None, ["c0"]):
        assert run(fts, query, columns) == python_hits(fts[1], query, columns)


def test_a_query_fts5_cannot_parse_fails_with_the_message_the_planner_refuses() -> None:
    """Past FTS5's parser stack the planner answers QueryTooComplex (HTTP 422), keyed on FTS5's own message."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(c0)")
    compiled = compile_query("alpha | beta gamma " * 96)
    assert compiled is not None
    with pytest.raises(sqlite3.OperationalError, match=re.escape(FTS5_TOO_DEEP)):
        db.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (compiled.expression,)).fetchall()
    db.close()


@pytest.mark.parametrize("query", ["alpha | beta gamma " * 200, "(alpha | (beta -(gamma " * 5000])
def test_a_query_nested_past_fts5s_depth_is_refused_before_it_runs(query: str) -> None:
    """SQLite 3.45+ refuses FTS5 expressions nested deeper than 256; older versions recurse on the C stack."""
    with pytest.raises(QueryTooComplex) as refusal:
        compile_query(query)
    assert isinstance(refusal.value, ValueError), "Argilla answers a ValueError with HTTP 422"
    message = str(refusal.value)
    assert "\n" not in message and "text query" in message and "MATCH" not in message


def test_the_depth_limit_is_the_one_newer_sqlite_enforces() -> None:
    assert MAX_DEPTH == 256


def test_parsing_and_compiling_take_a_few_python_frames_whatever_the_nesting() -> None:
    """The server compiles deep inside its own stack (ASGI, middleware, the engine): no frame per group or clause."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        for query in [*LONG, "alpha | beta gamma " * 200, "(alpha | (beta -(gamma " * 5000, "x -(y | -(z " * 300]:
            try:
                compile_query(query)
            except QueryTooComplex:
                pass
    finally:
        sys.setrecursionlimit(limit)


def nested_query(rng: random.Random, depth: int) -> str:
    clauses = []
    for _ in range(rng.randint(1, 4)):
        if depth and rng.random() < 0.5:
            clause = "(" + nested_query(rng, depth - 1) + ")"
        else:
            clause = rng.choice([*VOCABULARY, '"alpha beta"', "al*", '"near or"~1'])
        clauses.append(rng.choice(["", "", "-"]) + clause)
    return clauses[0] + "".join(rng.choice([" ", " | ", " + "]) + clause for clause in clauses[1:])


def test_random_nested_and_long_queries_compile_to_the_same_set_as_the_query(fts) -> None:
    rng = random.Random(7)
    queries = [nested_query(rng, 5) for _ in range(200)]
    queries += [" ".join(nested_query(rng, 1) for _ in range(rng.randint(20, 40))) for _ in range(40)]
    for query in queries:
        if parse(query) is None:
            continue
        for columns in (None, ["c1"]):
            assert run(fts, query, columns) == python_hits(fts[1], query, columns), (query, columns)
