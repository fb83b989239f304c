"""Answers shown one way: every code fence normalised, never a word of the answer changed, and the sandbox running
exactly the code annotators see as Python."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from llm_feedback.analysis import current_scores
from llm_feedback.annotation.dataset_settings import DatasetSpec, shown_answer
from llm_feedback.annotation.push import _plan
from llm_feedback.annotation.record_pages import ServerRecord
from llm_feedback.annotation.records import AnnotationRecord, build_records
from llm_feedback.artifacts import text_sha
from llm_feedback.errors import PipelineError
from llm_feedback.execution import extract_code
from llm_feedback.params import AnnotationParams, RubricParams
from llm_feedback.presentation import fences, is_transcript, looks_like_python, normalise, python_blocks
from llm_feedback.testing.generations import answered
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import make_tasks

LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # CommonMark's line breaks: \n, \r\n, \r


def lines(text: str) -> list[str]:
    return LINE.findall(text)


# --- every fence variant ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ("```\ndef f():\n    return 1\n```\n", "```python\ndef f():\n    return 1\n```\n"),
        ("```py\nx = 1\n```", "```python\nx = 1\n```"),
        ("```Python3\nx = 1\n```", "```python\nx = 1\n```"),
        ("```PYTHON\nx = 1\n```", "```python\nx = 1\n```"),
        ("```py3 title='a.py'\nx = 1\n```", "```python\nx = 1\n```"),
        ("```  python  \nx = 1\n```  ", "```python\nx = 1\n```"),
        ("~~~\nx = 1\n~~~\n", "```python\nx = 1\n```\n"),
        ("~~~~Python\nx = 1\n~~~~~~\n", "```python\nx = 1\n```\n"),
        ("```\nimport os\nprint(os.sep)\n```", "```python\nimport os\nprint(os.sep)\n```"),
        ("```\nprint('hi')\n```", "```python\nprint('hi')\n```"),
        ("```\ndef broken(:\n    pass\n```", "```python\ndef broken(:\n    pass\n```"),
        ("```\nclass A:\n    x = (\n```", "```python\nclass A:\n    x = (\n```"),
        ("```\n>>> f(1)\n2\n```", "```python\n>>> f(1)\n2\n```"),
        ("```\npip install numpy\n```", "```text\npip install numpy\n```"),
        ("```\n42\n```", "```text\n42\n```"),
        ("```\n[1, 2, 3]\n```", "```text\n[1, 2, 3]\n```"),
        ("```\nls -la\n```", "```text\nls -la\n```"),
        ("```\nResult: 3\n```", "```text\nResult: 3\n```"),
        ("```\n```", "```text\n```"),
        ("```JavaScript\nconsole.log(1)\n```", "```javascript\nconsole.log(1)\n```"),
        ("~~~Rust\nfn main() {}\n~~~", "```rust\nfn main() {}\n```"),
        ("```bash\npip install x\n```", "```bash\npip install x\n```"),
        ("```pycon\n>>> 1\n1\n```", "```pycon\n>>> 1\n1\n```"),
        ("~~~ a`b\nx = 1\n~~~", "```python\nx = 1\n```"),  # a tag with a backtick cannot follow backticks
    ],
)
def test_each_fence_variant_is_shown_one_way(answer: str, shown: str) -> None:
    assert normalise(answer) == shown
    assert normalise(shown) == shown


def test_fences_in_containers_keep_their_indentation_and_markers() -> None:
    answer = (
        "Steps:\n\n1. Write it:\n   ```Py\n   def f():\n       return 1\n   ```\n"
        "- ```\n  x = 2\n  ```\n\n"
        "> ~~~\n> y = 3\n> ~~~\n\n"
        "   ```\n   z = 4\n   ```\n"
    )
    assert normalise(answer) == (
        "Steps:\n\n1. Write it:\n   ```python\n   def f():\n       return 1\n   ```\n"
        "- ```python\n  x = 2\n  ```\n\n"
        "> ```python\n> y = 3\n> ```\n\n"
        "   ```python\n   z = 4\n   ```\n"
    )
    assert python_blocks(normalise(answer)) == ["def f():\n    return 1\n", "x = 2\n", "y = 3\n", "z = 4\n"]


def test_longer_and_nested_fences() -> None:
    nested = "````markdown\n```python\nx = 1\n```\n````\n"
    assert normalise(nested) == nested, "the inner fence is the outer one's content"
    assert python_blocks(normalise(nested)) == []
    tilde = "~~~\ns = '''\n```\n'''\n~~~\n"
    assert normalise(tilde) == "````python\ns = '''\n```\n'''\n````\n", "one backtick more than the content holds"
    assert normalise("```\nx = '``````'\n```") == "```````python\nx = '``````'\n```````"
    assert normalise("```\nx = 1\n`````\n") == "```python\nx = 1\n```\n", "a longer closing fence"
    assert normalise("```py\na = 1\n``\n```\n") == "```python\na = 1\n``\n```\n", "a shorter run does not close"


def test_an_unclosed_fence_runs_to_the_end_and_stays_unclosed() -> None:
    assert normalise("Text\n```\nx = 1\n") == "Text\n```python\nx = 1\n"
    assert normalise("Text\n```\nx = 1") == "Text\n```python\nx = 1"
    assert normalise("~~~py\nx = 1\n```\ny = 2\n") == "````python\nx = 1\n```\ny = 2\n"
    assert python_blocks(normalise("~~~py\nx = 1\n```\ny = 2\n")) == ["x = 1\n```\ny = 2\n"]
    assert normalise("~~~\nx = 1\n```\n") == "````text\nx = 1\n```\n", "not Python as a whole"


def test_indented_code_and_inline_backticks_are_left_alone() -> None:
    for answer in (
        "Para\n\n    ```\n    x = 1\n    ```\n",
        "Para\n\n\tx = 1\n",
        "Use ```x = 1``` inline, or `~~~`.",
        "```` not a fence: ``` inside the info string\n",
    ):
        assert normalise(answer) == answer


def test_line_breaks_stay_as_written() -> None:
    answer = "a\r\n```Py\r\nx = 1\r\n```\r\n\r\nb\rc\n"
    assert normalise(answer) == "a\r\n```python\r\nx = 1\r\n```\r\n\r\nb\rc\n"


def test_what_looks_like_python() -> None:
    assert looks_like_python("def f(x):\n    return x\n")
    assert looks_like_python("x = [i for i in range(3)]")
    assert looks_like_python("f(2)")
    assert looks_like_python("from collections import Counter\nCounter('ab'")
    assert looks_like_python(">>> 1 + 1\n2\n")
    assert looks_like_python("\n  >>> f()\n")
    for not_python in ("42", "'text'", "Hello", "ls -la", "numpy==2.0", "main.py", "Output: 4", "x: int", "", "{}"):
        assert not looks_like_python(not_python), not_python
    for not_python in ("npm install", "$ python main.py", "SELECT * FROM t;", "Traceback (most recent call last):"):
        assert not looks_like_python(not_python), not_python
    assert not looks_like_python("class Foo {\n  int x;\n}"), "a Java class header has no colon"
    assert is_transcript(">>> x") and not is_transcript("x = '>>> '")


# --- the words never change: a property over generated answers ----------------------------------------------------


PYTHON_SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "import math\nprint(math.pi)\n",
    "class A:\n    pass\n",
    "x = 1\n\n\ny = 2\n",
    "s = '```'\n",
    "text = '''\n```\ninside\n````\n'''\n",
    ">>> add(1, 2)\n3\n",
    "def broken(:\n",
    "    indented = True\n",
    "~~~\n",
]
OTHER_SNIPPETS = ["42\n", "pip install numpy\n", "console.log(1);\n", "Hello, world!\n", "Result: 3\n", "``\n", ""]
INFOS = [
    "",
    "",
    "",
    "py",
    "Python3",
    "PYTHON",
    "python",
    "py title=x.py",
    "JavaScript",
    "bash",
    "text",
    "c++",
    "{.python}",
]
PROSE = [
    "Here is the solution:",
    "Use `f(x)` or ``` inline ``` code.",
    "The ~~~ and ``` marks mid-line are text.",
    "* a list item",
    "1. first",
    "> quoted",
    "# Heading",
    "    indented code",
    "\tx = tab indented",
    "",
    "---",
    "<div>html</div>",
]


def random_fence(rng: random.Random) -> list[str]:
    char = rng.choice("`~")
    run = char * rng.choice([3, 3, 3, 4, 5])
    info = rng.choice(INFOS) if char == "`" or rng.random() < 0.8 else " a`b"
    content = "".join(rng.choice(PYTHON_SNIPPETS + OTHER_SNIPPETS) for _ in range(rng.randint(0, 3)))
    indent = " " * rng.choice([0, 0, 0, 1, 2, 3])
    block = [indent + run + rng.choice(["", " "]) + info, *content.splitlines()]
    ending = rng.random()
    if ending < 0.7:
        block.append(indent + char * (len(run) + rng.choice([0, 0, 1, 2])) + rng.choice(["", "  "]))
    elif ending < 0.8:
        block.append(char * (len(run) - 1))  # too short to close: the fence goes on
    return block


def in_container(rng: random.Random, block: list[str]) -> list[str]:
    kind = rng.choice(["none", "none", "list", "ordered", "quote"])
    if kind == "list":
        return ["- " + block[0], *("  " + line if line else line for line in block[1:])]
    if kind == "ordered":
        return ["1. " + block[0], *("   " + line if line else line for line in block[1:])]
    if kind == "quote":
        return ["> " + line for line in block]
    return block


def random_answer(rng: random.Random) -> str:
    out: list[str] = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.5:
            out.extend(in_container(rng, random_fence(rng)))
        else:
            out.append(rng.choice(PROSE))
        if rng.random() < 0.5:
            out.append("")
    text = rng.choice(["\n", "\r\n"]).join(out)
    return text + rng.choice(["", "\n"])


@dataclass(frozen=True)
class Seen:
    first: int
    last: int | None
    content: str


def seen(text: str) -> list[Seen]:
    return [Seen(f.first, f.last, f.content) for f in fences(text)]


RENDERER = MarkdownIt("commonmark")
CODE_CLASS = re.compile(r'<code class="language-[^"]*">')


def rendered_without_languages(text: str) -> str:
    """The HTML a CommonMark renderer makes of the text, with the code blocks' language classes left out."""
    return CODE_CLASS.sub("<code>", RENDERER.render(text))


def check_only_fence_lines_change(answer: str) -> None:
    shown = normalise(answer)
    before, after = lines(answer), lines(shown)
    assert "".join(before) == answer and "".join(after) == shown
    assert len(before) == len(after)
    fence_lines = {f.first for f in seen(answer)} | {f.last for f in seen(answer) if f.last is not None}
    kept = [i for i in range(len(before)) if i not in fence_lines]
    assert [before[i] for i in kept] == [after[i] for i in kept], "every line but fence lines is byte-identical"
    assert Counter(before[i] for i in kept) == Counter(after[i] for i in kept)
    assert seen(shown) == seen(answer), "the same blocks, on the same lines, with the same contents"
    assert rendered_without_languages(shown) == rendered_without_languages(answer), "the same document"
    assert normalise(shown) == shown, "idempotent"
    for fence, was in zip(fences(shown), fences(answer), strict=True):
        assert set(fence.marker) == {"`"} and len(fence.marker) >= 3
        tag = was.language.lower() if "`" not in was.language else ""
        if tag in ("python", "py", "python3", "py3") or (not tag and looks_like_python(was.content)):
            assert fence.language == "python"
        else:
            assert fence.language == (tag or "text")
    for i in fence_lines:  # a fence line keeps what comes before its run and its line break
        prefix = re.match(r"[^`~]*", before[i]).group()
        assert (
            after[i].startswith(prefix)
            and after[i][len(after[i].rstrip("\r\n")) :] == before[i][len(before[i].rstrip("\r\n")) :]
        )


def test_only_fence_lines_ever_change_on_generated_answers() -> None:
    rng = random.Random(20240611)
    checked = 0
    for _ in range(1500):
        answer = random_answer(rng)
        check_only_fence_lines_change(answer)
        checked += bool(fences(answer))
    assert checked > 750, "most generated answers hold fences"


def test_the_generator_reaches_every_case() -> None:
    """The property above is tested on answers with each kind of fence, not on a narrow sample."""
    rng = random.Random(20240611)
    answers = [random_answer(rng) for _ in range(1500)]
    found = [f for a in answers for f in fences(a)]
    shown = [f for a in answers for f in fences(normalise(a))]
    assert {f.marker[0] for f in found} == {"`", "~"}
    assert any(f.last is None for f in found), "unclosed fences"
    assert any(len(f.marker) > 3 for f in shown), "fences made longer for their content"
    assert {"python", "text", "javascript", "bash"} <= {f.language for f in shown}
    assert any("\r\n" in a for a in answers) and any(a.startswith(("- ", "> ", "1. ")) for a in answers)
    assert any(is_transcript(f.content) for f in found) and any("`" in f.language for f in found)


# --- execute and annotators see the same code ------------------------------------------------------------------


def spec() -> DatasetSpec:
    annotation = AnnotationParams(
        guidelines=PROJECT_ROOT / "annotation/guidelines.md",
    )
    return DatasetSpec.from_params(annotation, rubric=RubricParams(), responses=2, with_executions=False)


UNTAGGED = (
    "Here is my solution:\n\n```\ndef f0():\n    return 0\n```\n\nInstall nothing:\n\n```\npip --version\n```\n\n"
    "Example:\n\n```\n>>> f0()\n0\n```\n"
)
TAGGED = "~~~Python3\ndef f0():\n    return 0\n~~~\n"


def shown_answers(record: AnnotationRecord) -> list[str]:
    """The answers' text as a record holds it, in position order, in either layout (what pull fingerprints)."""
    return [shown_answer(record.fields, position) for position in range(1, len(record.models) + 1)]


def test_execute_runs_the_code_the_pushed_record_shows_as_python() -> None:
    tasks = make_tasks(1)
    task = tasks.column("task_id")[0].as_py()
    generations = answered({(task, "a"): UNTAGGED, (task, "b"): TAGGED})
    record = build_records(tasks, generations=generations, models=["a", "b"], spec=spec(), seed=1).records[0]
    for model, shown in zip(record.models, shown_answers(record), strict=True):
        answer = UNTAGGED if model == "a" else TAGGED
        assert shown == normalise(answer)
        shown_code = "\n\n".join(block.rstrip() for block in python_blocks(shown)) + "\n"
        assert extract_code(answer) == shown_code == "def f0():\n    return 0\n"
        assert extract_code(shown) == extract_code(answer), "the shown text runs the same code"
    a_shown = shown_answers(record)[record.models.index("a")]
    assert "```python\ndef f0()" in a_shown and "```text\npip --version" in a_shown
    assert "```python\n>>> f0()" in a_shown, "a transcript is shown as Python, and not run"
    assert generations.column("response").to_pylist() == [UNTAGGED, TAGGED], "the generations keep the text"


def test_a_shell_or_output_fence_is_not_run_and_python_ones_are() -> None:
    assert extract_code("```\npip install x\n```") is None
    assert extract_code("```\n42\n```") is None
    assert extract_code("```\nx = 1\n```\n```\nprint(x)\n```") == "x = 1\n\nprint(x)\n"
    assert extract_code("1. Do:\n   ```py\n   x = 1\n   ```\n") == "x = 1\n", "a list item's indentation is not code"
    assert extract_code("```python\n>>> 1 + 1\n2\n```") is None, "a transcript alone is no code to run"


# --- scores and records pushed before: not stale, not changed ---------------------------------------------------


def rated(shas: list[str], answers: dict[tuple[str, str], str]) -> pd.DataFrame:
    keys = list(answers)
    return pd.DataFrame(
        {
            "task_id": [k[0] for k in keys],
            "model": [k[1] for k in keys],
            "annotator": ["ann"] * len(keys),
            "record_id": [k[0] for k in keys],
            "position": list(range(1, len(keys) + 1)),
            "status": ["submitted"] * len(keys),
            "score": [5] * len(keys),
            "response_sha": shas,
        }
    )


def test_a_score_of_the_text_as_shown_or_as_written_is_current() -> None:
    answers = {("t1", "a"): UNTAGGED, ("t2", "a"): UNTAGGED, ("t3", "a"): UNTAGGED, ("t4", "a"): TAGGED}
    generations = answered(answers)
    shas = [text_sha(normalise(UNTAGGED)), text_sha(UNTAGGED), text_sha("other words"), text_sha(normalise(TAGGED))]
    current, stale = current_scores(rated(shas, answers), generations)
    assert sorted(current["task_id"]) == ["t1", "t2", "t4"] and list(stale["task_id"]) == ["t3"]
    assert set(current.columns) == set(stale.columns)


def server_record(record: AnnotationRecord, fields: dict, *, answered_by: int) -> ServerRecord:
    responses = tuple({"user_id": f"u{i}", "status": "submitted", "values": {}} for i in range(answered_by))
    return ServerRecord("uuid", record.record_id, fields, dict(record.metadata), frozenset(), responses)


def test_a_record_pushed_before_normalisation_is_not_a_changed_answer() -> None:
    written = {"instruction": "Write f0.", "response_1": UNTAGGED, "response_2": TAGGED}
    shown = {k: v if k == "instruction" else normalise(v) for k, v in written.items()}
    assert shown != written
    records = [AnnotationRecord(f"t{i}", f"t{i}", ("a", "b"), shown, {"source": "sample"}) for i in range(3)]
    server = {
        "t0": server_record(records[0], written, answered_by=1),  # rated as written, before normalisation
        "t1": server_record(records[1], written, answered_by=0),  # nobody rated it yet
        "t2": server_record(records[2], {**written, "response_1": "other words"}, answered_by=1),
    }
    with pytest.raises(PipelineError, match=r"1 records already answered would change \(t2\)"):
        _plan(records, server, "fail")
    plan = _plan(records[:2], server, "fail")
    assert (plan.created, plan.unchanged, plan.updated) == (0, 1, 1)
    assert [r.record_id for r in plan.to_log] == ["t1"] and plan.to_log[0].fields == shown, "the unrated one is shown"
