"""`dvc plots show` in a git copy of the project after a real `dvc repro` of analyze: the page it writes draws every
chart in headless Chromium with all but file:// requests refused (Vega comes from the project's own page template, not
a CDN), each chart names its models, and the score distribution puts the count on the quantitative axis."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pytest

from llm_feedback.annotation.receipt import Receipt
from llm_feedback.artifacts import ANNOTATIONS, EXECUTIONS, GENERATIONS, JUDGE_PAIRWISE, JUDGMENTS, TASKS, write_table
from llm_feedback.testing.synthetic_annotations import annotations_for, generations_for
from tests.project import copy_project, edit_params, run

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUALITY = {"qwen-coder-0.5b": 4.5, "smollm2-360m": 3.5, "llama-3.3-70b": 3.0}  # declared in the shipped params.yaml
TASK_IDS = [f"{i:016x}" for i in range(40)]
MARKS = ".role-mark.mark-symbol path, svg.marks .role-mark.mark-rect path"  # points and bars, not legend symbols
CHARTS = ["differences.csv", "mean_scores.csv", "win_rates.csv", "score_distribution.csv"]  # in dvc.yaml's order
ANALYZE_PLOTS = [f"plots/{chart}" for chart in CHARTS]  # the train stage's loss curve exists once it has trained


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the project whose analyze stage ran through `dvc repro` on synthetic annotations."""
    repo = copy_project(tmp_path_factory.mktemp("plots") / "project")
    edit_params(repo, lambda params: params.update(compare=list(QUALITY)))
    data = repo / "data"
    tasks = pa.table(
        {
            "task_id": TASK_IDS,
            "instruction": [f"Write f{i}" for i in range(len(TASK_IDS))],
            "source": ["s"] * len(TASK_IDS),
            "source_row": list(range(len(TASK_IDS))),
        }
    )
    write_table(TASKS.validate(tasks, "tasks"), data / "tasks.parquet", TASKS)
    write_table(generations_for(TASK_IDS, list(QUALITY)), data / "generations.parquet", GENERATIONS)
    annotations = annotations_for(TASK_IDS, QUALITY, {"ann-a": 0.0, "ann-b": 0.5})
    write_table(annotations, data / "annotations.parquet", ANNOTATIONS)
    for name, artifact in (("judgments", JUDGMENTS), ("judge_pairwise", JUDGE_PAIRWISE), ("executions", EXECUTIONS)):
        write_table(artifact.schema.empty_table(), data / f"{name}.parquet", artifact)
    Receipt(
        url="http://127.0.0.1:9",
        workspace="llm-feedback",
        dataset="code-answers",
        dataset_id="d",
        models=list(QUALITY),
        records=len(TASK_IDS),
        settings_hash="s",
        content_hash="c",
    ).write(data / "push.json")
    assert "Running stage 'analyze'" in run(["dvc", "repro", "--single-item", "analyze"], repo).stdout
    return repo


def test_the_page_draws_every_chart_without_internet(analyzed: Path) -> None:
    from playwright.sync_api import sync_playwright

    shown = run(["dvc", "plots", "show", *ANALYZE_PLOTS], analyzed).stdout.strip().splitlines()[-1]
    assert shown == (analyzed / "dvc_plots/index.html").as_uri()
    refused: list[str] = []
    errors: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", only_files)
            page.on("pageerror", lambda error: errors.append(str(error)))
            started = time.perf_counter()
            page.goto(shown)
            page.wait_for_function(
                f"document.querySelectorAll('.vega-embed svg.marks').length === {len(CHARTS)}", timeout=15_000
            )
            print(f"{len(CHARTS)} charts drawn in {time.perf_counter() - started:.2f} s")
            charts = page.locator(".vega-embed").all()
            texts = [chart.locator("svg.marks").text_content() or "" for chart in charts]
            marks = [chart.locator(f"svg.marks {MARKS}").count() for chart in charts]
        finally:
            browser.close()

    assert refused == [] and errors == []
    assert "Mean paired difference" in texts[0], "the differences come first"
    for a, b in [("qwen-coder-0.5b", "smollm2-360m"), ("qwen-coder-0.5b", "llama-3.3-70b")]:
        assert f"{a} - {b}" in texts[0] and f"{a} vs {b}" in texts[2]
    for text in texts[1], texts[3]:  # mean scores and the score distribution name every model
        assert all(model in text for model in QUALITY), text
    assert marks[0] == 3 and marks[1] == 3, "a point per pair and per model"
    assert marks[2] == 9 and marks[3] == 3 * 8, "win/tie/loss per pair, a bar per model and score"


def test_the_chart_specs_put_quantities_on_the_quantitative_axis(analyzed: Path) -> None:
    plots = json.loads(run(["dvc", "plots", "show", "--json", *ANALYZE_PLOTS], analyzed).stdout)["data"]
    specs = {Path(name).name: plot[0]["content"] for name, plot in plots.items()}
    assert list(specs) == CHARTS

    distribution = specs["score_distribution.csv"]
    encoding = distribution["spec"]["encoding"]
    assert (encoding["x"]["field"], encoding["x"]["type"]) == ("score", "ordinal")
    assert (encoding["y"]["field"], encoding["y"]["type"]) == ("count", "quantitative")
    assert distribution["facet"]["field"] == "model"
    assert {row["model"] for row in distribution["data"]["values"]} == set(QUALITY)

    differences = specs["differences.csv"]
    point = differences["layer"][-1]["encoding"]
    assert (point["x"]["field"], point["x"]["type"], point["y"]["field"]) == ("difference", "quantitative", "pair")
    metrics = json.loads((analyzed / "metrics.json").read_text())
    drawn = {row["pair"]: float(row["difference"]) for row in differences["data"]["values"]}
    assert drawn == {pair.replace("_vs_", " - "): entry["difference"] for pair, entry in metrics["pairwise"].items()}
