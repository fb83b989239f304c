"""Benchmark: is annotating one record slower side by side than stacked? The page's load and submit times of the
two layouts, in the same run, in headless Debian Chromium at 1440x900, as an annotator works.

A fresh embedded server (the project's own: `.argilla/venv`, SQLite, loopback) in a throwaway folder; two datasets
pushed by the project's push, the same tasks and answers (two models, code answers of about 40 lines, each with an
execution result and the judge's reasoning), one `annotation.layout: side_by_side`, one `stacked`. An annotator
signs in once per layout, then for each of `--records` records:
- `load`: from opening the dataset's page to every answer's code on screen (the custom field's columns, or the
  last text field);
- `submit`: from the first rating click to the next record's answers on screen (rate both answers, Submit).
The layouts alternate record by record, so both see the same server and machine state. Figures are medians;
target: side by side no more than 10% slower than stacked (the baseline) on either.

Run from the project root (about 2 minutes; needs Debian's chromium):

    .venv/bin/python bench/annotation_view.py [--records 12]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True

import pyarrow as pa  # noqa: E402

from bench.figures import Figure, exit_on_targets, print_figures  # noqa: E402
from llm_feedback.annotation.annotators import add_annotators  # noqa: E402
from llm_feedback.annotation.connection import resolve  # noqa: E402
from llm_feedback.annotation.embedded import EmbeddedServer, start, stop  # noqa: E402
from llm_feedback.annotation.push import push  # noqa: E402
from llm_feedback.artifacts import TASKS  # noqa: E402
from llm_feedback.params import Params  # noqa: E402
from llm_feedback.testing.generations import answered, judged_and_run  # noqa: E402
from llm_feedback.testing.ports import free_port  # noqa: E402

MODELS = ["model-a", "model-b"]
LAYOUTS = ("stacked", "side_by_side")
TARGET = 1.10
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def answer(task: int, model: str) -> str:
    body = "\n".join(f"    total += values[{k}] * {task + k}  # step {k}" for k in range(30))
    fence = "```python" if model == MODELS[0] else "```"
    return (
        f"Here is `solve_{task}`, with a docstring and a test.\n\n{fence}\ndef solve_{task}(values):\n"
        f'    """Weighted sum of the first 30 values."""\n    total = 0\n{body}\n    return total\n\n\n'
        f"assert solve_{task}(list(range(30))) > 0\n```\n\nIt runs in linear time."
    )


def inputs(n: int) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    ids = [f"{i:016x}" for i in range(n)]
    tasks = TASKS.validate(
        pa.table(
            {
                "task_id": ids,
                "instruction": [f"Write `solve_{i}`: the weighted sum of a list." for i in range(n)],
                "source": ["bench"] * n,
                "source_row": list(range(n)),
            }
        ),
        "tasks",
    )
    generations = answered({(t, m): answer(i, m) for i, t in enumerate(ids) for m in MODELS})
    judgments, executions = judged_and_run(ids, MODELS, score=5, rationale="Clear; it runs.")
    return tasks, generations, judgments, executions


def params(url: str, layout: str) -> Params:
    return Params.model_validate(
        {
            "argilla": {"url": url},
            "annotation": {
                "dataset": f"bench-{layout.replace('_', '-')}-{secrets.token_hex(2)}",
                "assignment": "overlap",
                "guidelines": str(ROOT / "annotation/guidelines.md"),
                "layout": layout,
            },
            "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
            "compare": MODELS,
        }
    )


# every answer's code of the record whose function is `name`, rendered: in the page, or in the field's frame
ON_SCREEN = """([name, count]) => {
    const frame = document.querySelector("iframe");
    const roots = [document, ...(frame && frame.contentDocument ? [frame.contentDocument] : [])];
    const blocks = roots.flatMap(root => [...root.querySelectorAll("pre")]);
    return blocks.filter(pre => pre.innerText.includes("def " + name + "(")).length >= count;
}"""


# the record on screen asks for another function than `old`
NEXT_RECORD = """old => [...document.querySelectorAll("p")].some(
    p => /^Write solve_\\d+/.test(p.innerText) && !p.innerText.startsWith("Write " + old + ":")
)"""


def answers_on_screen(page, name: str) -> None:
    """Wait, polling every animation frame in both layouts alike, until every answer's code is rendered."""
    page.wait_for_function(ON_SCREEN, arg=[name, len(MODELS)], polling="raf")


def function_on_screen(page) -> str:
    """The function the record on screen asks for (each task names its own)."""
    shown = page.get_by_text(re.compile(r"^Write solve_\d+")).first.inner_text()
    return re.match(r"Write (solve_\d+)", shown).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=12)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench-view-"))
    server = EmbeddedServer(data_dir=folder / "server", port=free_port(), venv_dir=ROOT / ".argilla" / "venv")
    credentials, _ = start(server)
    os.environ["ARGILLA_API_KEY"] = credentials.api_key
    timings: dict[str, dict[str, list[float]]] = {layout: {"load": [], "submit": []} for layout in LAYOUTS}
    try:
        tasks, generations, judgments, executions = inputs(args.records + 1)
        datasets = {}
        for layout in LAYOUTS:
            p = params(server.url, layout)
            push(p, tasks=tasks, generations=generations, judgments=judgments, executions=executions)
            datasets[layout] = p.annotation.dataset
        (annotator,) = add_annotators(
            resolve(p.argilla), workspace=p.annotation.workspace, usernames=["bench-viewer"], store=folder / "a.json"
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            pages = {}
            for layout in LAYOUTS:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.route("**/fonts.googleapis.com/**", lambda route: route.abort())
                page.goto(server.url)
                page.get_by_label("Username").fill(annotator.username)
                page.get_by_label("Password").fill(annotator.password)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_text(datasets[layout]).first.wait_for()
                pages[layout] = page
            home = pages[LAYOUTS[0]].url
            for _ in range(args.records):
                for layout in LAYOUTS:
                    page = pages[layout]
                    page.goto(home)
                    began = time.perf_counter()
                    page.get_by_text(datasets[layout]).first.click()
                    page.get_by_text(re.compile(r"^Write solve_\d+")).first.wait_for()
                    answers_on_screen(page, function_on_screen(page))
                    timings[layout]["load"].append(time.perf_counter() - began)
                    shown = function_on_screen(page)
                    began = time.perf_counter()
                    for position in range(1, len(MODELS) + 1):
                        page.locator(f"label[for=score_response_{position}_{2 + position}]").click()
                    page.get_by_role("button", name="Submit").click()
                    page.wait_for_function(NEXT_RECORD, arg=shown, polling="raf")
                    answers_on_screen(page, function_on_screen(page))
                    timings[layout]["submit"].append(time.perf_counter() - began)
            browser.close()
    finally:
        stop(server)
        shutil.rmtree(folder, ignore_errors=True)

    rows = []
    for what in ("load", "submit"):
        stacked = statistics.median(timings["stacked"][what])
        side = statistics.median(timings["side_by_side"][what])
        rows.append(
            Figure(
                f"{what}: one record, side by side (median of {args.records})",
                f"{side * 1000:.0f} ms ({side / stacked:.2f}x)",
                f"<= {TARGET:.2f}x",
                f"stacked {stacked * 1000:.0f} ms",
                side <= TARGET * stacked,
            )
        )
    print_figures(rows, label_width=48, target_width=8, baseline_width=24)
    exit_on_targets(rows)


if __name__ == "__main__":
    main()
