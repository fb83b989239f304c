"""An annotator's whole round trip in the real web UI, in headless Debian Chromium: log in, open the dataset, rate both
responses, submit; the owner's SDK sees the submission."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def annotated_dataset(argilla_server):
    import argilla as rg

    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.api_key, retries=0)
    suffix = secrets.token_hex(3)
    workspace = rg.Workspace(name=f"browser-{suffix}", client=client).create()
    password = secrets.token_urlsafe(12)
    annotator = rg.User(username=f"ann-{suffix}", password=password, role="annotator", client=client).create()
    workspace.add_user(annotator)
    settings = rg.Settings(
        guidelines="Rate each response from 0 to 7.",
        fields=[
            rg.TextField(name="instruction"),
            rg.TextField(name="response_1", use_markdown=True),
            rg.TextField(name="response_2", use_markdown=True),
        ],
        questions=[
            rg.RatingQuestion(name="score_response_1", values=list(range(8))),
            rg.RatingQuestion(name="score_response_2", values=list(range(8))),
        ],
    )
    dataset = rg.Dataset(name=f"compare-{suffix}", workspace=workspace.name, settings=settings, client=client).create()
    dataset.records.log(
        [
            {"id": f"task-{i}", "instruction": f"Write a Python function `f{i}`.", "response_1": "```python\npass\n```",
             "response_2": f"```python\ndef f{i}():\n    return {i}\n```"}
            for i in range(3)
        ]
    )
    return dataset, annotator, password


def test_annotator_rates_and_submits_in_the_web_ui(argilla_server, annotated_dataset, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    dataset, annotator, password = annotated_dataset
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/fonts.googleapis.com/**", lambda route: route.abort())  # nothing leaves loopback
            page.goto(argilla_server.url)
            page.get_by_label("Username").fill(annotator.username)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text(dataset.name).first.click()
            page.locator("label[for=score_response_1_5]").click()
            page.locator("label[for=score_response_2_2]").click()
            shown = page.get_by_text("Write a Python function").first.inner_text()
            page.get_by_role("button", name="Submit").click()
            page.get_by_text("33.33%").wait_for()  # the progress bar: one of three records submitted
            page.screenshot(path=tmp_path / "after-submit.png")
        finally:
            browser.close()

    submitted = {
        record.id: {(r.question_name, r.value, r.status.value, r.user_id) for r in record.responses}
        for record in dataset.records(with_responses=True)
    }
    task = next(record_id for record_id in submitted if f"`f{record_id.split('-')[1]}`" in shown)
    assert submitted[task] == {
        ("score_response_1", 5, "submitted", annotator.id),
        ("score_response_2", 2, "submitted", annotator.id),
    }
    assert all(not responses for record_id, responses in submitted.items() if record_id != task)
