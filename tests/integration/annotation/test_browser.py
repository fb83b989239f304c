"""An annotator's whole round trip in the real web UI, in headless Debian Chromium: push a dataset (with a judge's
scores as suggestions), log in as an annotator, see the suggestions pre-filled, rate both responses, submit; pull puts
each score on the model that was shown in that position."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.pull import pull
from llm_feedback.annotation.push import push
from llm_feedback.artifacts import JUDGMENTS
from tests.integration.annotation.annotating import make_generations, make_tasks, params_for

MODELS = ["alpha", "beta"]
SUGGESTED = {"alpha": 6, "beta": 3}  # the judge's scores
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def pushed(argilla_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The product's own dataset (push) and an annotator (annotators add), on the embedded server."""
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    suffix = secrets.token_hex(3)
    params = params_for(argilla_server.url, f"browser-{suffix}", MODELS, assignment="overlap")
    tasks = make_tasks(3)
    judgments = pa.Table.from_pylist(
        [
            {
                "task_id": t,
                "model": m,
                "judge": "judge-llm",
                "score": SUGGESTED[m],
                "rationale": None,
                "error": None,
                "answer": None,
                "request_hash": "h",
            }
            for t in tasks.column("task_id").to_pylist()
            for m in MODELS
        ],
        schema=JUDGMENTS.schema,
    )
    result = push(params, tasks=tasks, generations=make_generations(tasks, MODELS), judgments=judgments)
    added = add_annotators(
        resolve(params.argilla),
        workspace=params.annotation.workspace,
        usernames=[f"ann-{suffix}"],
        store=tmp_path / "a.json",
    )
    return params, result.receipt, added[0]


def test_annotator_rates_and_submits_in_the_web_ui(argilla_server, pushed, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    params, receipt, annotator = pushed
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/fonts.googleapis.com/**", lambda route: route.abort())  # nothing leaves loopback
            page.goto(argilla_server.url)
            page.get_by_label("Username").fill(annotator.username)
            page.get_by_label("Password").fill(annotator.password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text(receipt.dataset).first.click()
            page.get_by_text("If every response scores 4 or less").first.wait_for()
            shown = page.get_by_text("Write a function").first.inner_text()
            task = next(t for t in receipt.blinding if f"f{int(t, 16)} that returns" in shown)  # markdown drops `
            order = receipt.blinding[task]["models"]
            for position, model in enumerate(order, 1):  # the judge's scores arrive pre-filled
                assert page.locator(f"#score_response_{position}_{SUGGESTED[model]}").is_checked()
                assert not page.locator(f"#score_response_{position}_0").is_checked()
            page.locator("label[for=score_response_1_5]").click()
            page.locator("label[for=score_response_2_2]").click()
            page.get_by_role("button", name="Submit").click()
            page.get_by_text("33.33%").wait_for()  # the progress bar: one of three records submitted
            page.screenshot(path=tmp_path / "after-submit.png")
        finally:
            browser.close()

    rows = pull(params, receipt=receipt).table.to_pylist()
    first, second = order
    assert [(r["task_id"], r["annotator"], r["model"], r["position"], r["score"], r["status"]) for r in rows] == [
        (task, annotator.username, first, 1, 5, "submitted"),
        (task, annotator.username, second, 2, 2, "submitted"),
    ]
