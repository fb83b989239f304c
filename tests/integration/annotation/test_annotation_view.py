"""The annotation view in the real web UI, in headless Debian Chromium at 1440x900, as an annotator sees it: the
side-by-side layout for two and for three models (every answer's first lines in view without scrolling, the code of
every answer highlighted alike whatever fence its model wrote, the execution result and the judge's reasoning folded
under it, no model's name anywhere in the page), and the rating tooltip as plain text. Screenshots go to
build/screenshots/ (or $LLM_FEEDBACK_SCREENSHOTS)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.artifacts import GENERATIONS
from llm_feedback.testing.generations import judged_and_run
from tests.integration.annotation.annotating import make_tasks, params_for
from tests.project import PROJECT_ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
SCREENSHOTS = Path(os.environ.get("LLM_FEEDBACK_SCREENSHOTS", PROJECT_ROOT / "build" / "screenshots"))
# each model fences its code its own way: normalised, they must all look the same
FENCES = {
    "alpha-coder-7b": ("```python", "```"),
    "beta-instruct-3b": ("```", "```"),
    "gamma-chat-1b": ("~~~py", "~~~"),
}
MARKDOWN_MARKS = ("**", "- **", "`", "#")


def answer(model: str, task: int) -> str:
    opening, closing = FENCES[model]
    return "\n".join(
        [
            f"Here is `f{task}`, with a docstring and a test:",
            "",
            opening,
            f"def f{task}(n: int) -> int:",
            f'    """Return {task} plus n."""',
            f"    return {task} + n",
            "",
            "",
            f"assert f{task}(1) == {task + 1}",
            closing,
            "",
            "It runs in constant time.",
        ]
    )


def generations(tasks: pa.Table, models: list[str]) -> pa.Table:
    rows = [
        {
            "task_id": task_id,
            "model": model,
            "response": answer(model, i),
            "finish_reason": "stop",
            "prompt_tokens": 10,
            "completion_tokens": 40,
            "latency_s": 0.5,
            "attempts": 1,
            "error": None,
            "request_hash": f"{task_id}-{model}",
        }
        for i, task_id in enumerate(tasks.column("task_id").to_pylist())
        for model in models
    ]
    return pa.Table.from_pylist(rows, schema=GENERATIONS.schema)


def open_dataset(playwright, server, annotator, dataset: str):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport=VIEWPORT)
    page.route("**/fonts.googleapis.com/**", lambda route: route.abort())  # nothing leaves loopback
    page.goto(server.url)
    page.get_by_label("Username").fill(annotator.username)
    page.get_by_label("Password").fill(annotator.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(dataset).first.click()
    page.get_by_text("If every response scores 4 or less").first.wait_for()
    return browser, page


@pytest.fixture
def published(argilla_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """push(models) -> (params, receipt, annotator) on the embedded server, with the judge's reasoning and
    execution results."""
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)

    def publish(models: list[str], **annotation):
        suffix = secrets.token_hex(3)
        params = params_for(argilla_server.url, f"view-{suffix}", models, assignment="overlap", **annotation)
        tasks = make_tasks(2)
        judgments, executions = judged_and_run(
            tasks.column("task_id").to_pylist(), models, score=5, rationale="A docstring and an assert; it runs."
        )
        result = push(
            params,
            tasks=tasks,
            generations=generations(tasks, models),
            judgments=judgments,
            executions=executions,
        )
        (added,) = add_annotators(
            resolve(params.argilla),
            workspace=params.annotation.workspace,
            usernames=[f"viewer-{suffix}"],
            store=tmp_path / f"{suffix}.json",
        )
        return params, result.receipt, added

    return publish


@pytest.mark.parametrize("models", [list(FENCES)[:2], list(FENCES)], ids=["two", "three"])
def test_the_answers_sit_side_by_side_highlighted_alike_with_nothing_that_names_a_model(
    argilla_server, published, models: list[str]
) -> None:
    from playwright.sync_api import sync_playwright

    params, receipt, annotator = published(models)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser, page = open_dataset(playwright, argilla_server, annotator, receipt.dataset)
        try:
            frame = page.frame_locator("iframe").first
            answers = frame.locator("section.answer")
            answers.first.wait_for()
            assert answers.count() == len(models)
            page.screenshot(path=SCREENSHOTS / f"side-by-side-{len(models)}-models.png")
            boxes = [answers.nth(i).bounding_box() for i in range(len(models))]
            assert len({round(box["y"]) for box in boxes}) == 1, f"one row of columns: {boxes}"
            for i in range(len(models)):
                first_line = answers.nth(i).locator("pre code").first.bounding_box()
                assert first_line["y"] + 40 <= VIEWPORT["height"], f"Response {i + 1}'s code starts below the fold"
                assert boxes[i]["x"] + boxes[i]["width"] <= VIEWPORT["width"]
            styles = [
                answers.nth(i).evaluate(
                    """section => {
                        const pre = section.querySelector('pre');
                        const keyword = [...pre.querySelectorAll('span')].find(s => s.textContent === 'def');
                        const style = s => { const c = getComputedStyle(s); return [c.color, c.fontWeight]; };
                        return {pre: getComputedStyle(pre).backgroundColor, font: getComputedStyle(pre).fontFamily,
                                keyword: keyword ? style(keyword) : null, spans: pre.querySelectorAll('span').length};
                    }"""
                )
                for i in range(len(models))
            ]
            assert all(s["keyword"] is not None and s["spans"] > 5 for s in styles), styles
            assert all(
                {k: v for k, v in s.items() if k != "spans"} == {k: v for k, v in styles[0].items() if k != "spans"}
                for s in styles
            ), styles
            folded = answers.first.locator("details")
            assert folded.count() == 2 and not folded.first.evaluate("d => d.open"), "execution and judge: folded"
            folded.first.locator("summary").click()
            assert "Execution: pass (1 of 1 tests passed)" in answers.first.inner_text()
            html = page.content() + "".join(f.content() for f in page.frames)
            for model in models:
                assert model not in html, f"{model} appears in the page"
        finally:
            browser.close()

    rows = pull(params, receipt=receipt).table
    assert rows.num_rows == 0, "nothing rated yet, and pull reads the side-by-side records"
    # the server's search and filters see into the field: a word of one task's answers, an execution result
    task_1 = next(t for t in receipt.blinding if t.endswith("1"))
    assert searched(argilla_server, receipt.dataset_id, {"query": {"text": {"q": "f1", "field": "responses"}}}) == {
        task_1
    }
    passed = {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "execution_response_1"}}
    assert searched(argilla_server, receipt.dataset_id, {"filters": {"and": [{**passed, "values": ["pass"]}]}}) == set(
        receipt.blinding
    )


def searched(server, dataset_id: str, body: dict) -> set[str]:
    """The external ids of the records the owner's search returns."""
    found = httpx.post(
        f"{server.url}/api/v1/datasets/{dataset_id}/records/search",
        json=body,
        headers={"X-Argilla-Api-Key": server.api_key},
    )
    found.raise_for_status()
    return {item["record"]["external_id"] for item in found.json()["items"]}


def test_the_rating_tooltip_is_plain_text(argilla_server, published) -> None:
    from playwright.sync_api import sync_playwright

    _, receipt, annotator = published(list(FENCES)[:2])
    with sync_playwright() as playwright:
        browser, page = open_dataset(playwright, argilla_server, annotator, receipt.dataset)
        try:
            tip = page.locator('[aria-label="Rate Response 1"] button[role=tooltip]')
            tip.click()  # Argilla opens a question's description on click, as plain text
            shown = page.get_by_text("Start at 0 and add up the points (0 to 7)")
            shown.wait_for()
            page.screenshot(path=SCREENSHOTS / "rating-tooltip.png")
            text = shown.inner_text()
            assert (
                text
                == tip.get_attribute("aria-label")
                == (
                    "Start at 0 and add up the points (0 to 7): Comments and docstring 0, 1 or 2; "
                    "Test example 0, 1 or 2; Runs correctly 0 or 3.\n"
                    "0 for no code, code for a different task, or a refusal.\n"
                    "The guidelines say what earns each point."
                )
            )
            for mark in MARKDOWN_MARKS:
                assert mark not in text, f"{mark!r} in the tooltip: {text}"
            assert shown.bounding_box()["height"] <= 110, (
                "a few lines: it hides little of the form (it closes on a click)"
            )
        finally:
            browser.close()


def test_the_preference_question_and_the_criteria_form_as_an_annotator_fills_them_in(argilla_server, published) -> None:
    """annotation.rubric: criteria asks each criterion of each answer on its own, with its points and its own plain
    tooltip; annotation.preference asks which response is better. pull adds the criteria up to the score and puts
    the preference on the model shown there."""
    from playwright.sync_api import sync_playwright

    models = list(FENCES)[:2]
    params, receipt, annotator = published(models, rubric="criteria", preference=True)
    points = {  # Response 1: 6 points, Response 2: 4
        1: {"comments_and_docstrings": 2, "test_example": 1, "runs_correctly": 3},
        2: {"comments_and_docstrings": 1, "test_example": 0, "runs_correctly": 3},
    }
    with sync_playwright() as playwright:
        browser, page = open_dataset(playwright, argilla_server, annotator, receipt.dataset)
        try:
            page.get_by_text("Which response is better?").first.wait_for()
            page.get_by_text("Response 2: Runs correctly").first.wait_for()
            page.frame_locator("iframe").first.locator("section.answer").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "criteria-and-preference.png", full_page=True)
            tip = page.locator('[aria-label="Response 1: Runs correctly"] button[role=tooltip]')
            assert tip.get_attribute("aria-label").startswith("+3 (worth the most)")
            assert page.locator("label[for=runs_correctly_response_1_3]").count() == 1
            assert page.locator("label[for=runs_correctly_response_1_1]").count() == 0, "points the rubric allows only"
            for position, given in points.items():
                for name, value in given.items():
                    page.locator(f"label[for={name}_response_{position}_{value}]").first.click()
            preference = page.locator('[aria-label="Which response is better?"]').locator("xpath=..")
            preference.get_by_text("Response 2", exact=True).click()
            page.get_by_role("button", name="Submit").click()
            page.get_by_text("50.00%").wait_for()  # one of two records submitted
        finally:
            browser.close()

    rows = pull(params, receipt=receipt).table.to_pylist()
    assert len(rows) == 2
    task = rows[0]["task_id"]
    order = receipt.blinding[task]["models"]
    by_position = {r["position"]: r for r in rows}
    assert by_position[1]["score"] == 6 and by_position[2]["score"] == 4, "criteria added up"
    assert {r["preferred"] for r in rows} == {order[1]}, "the model shown as Response 2"
