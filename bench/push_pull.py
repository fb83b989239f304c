"""Benchmark: records/s of push and pull at 10k records, against the SDK's plain calls in the same run.

A fresh embedded server (the project's own: `.argilla/venv`, SQLite, loopback) in a throwaway folder. Inputs are
synthetic: N tasks x 2 models with answers of a few hundred characters, as code answers are.

Measured, each into its own dataset:
- `push (new)`: the push stage's work on an empty dataset: read what the server holds, plan, log every record.
  Baseline: the reference notebook's way, `dataset.records.log(list_of_dicts)` with the SDK's defaults, into a
  dataset with the same settings, which neither reads the server first nor blinds.
- `push (rerun)`: the same push again with nothing changed: everything is read back and compared, nothing is sent.
- `pull`: every record with one submitted response per record (logged beforehand through Argilla's bulk response
  endpoint). Baseline: the SDK's iterator, `dataset.records(with_responses=True)`, which pages through the search
  engine.

Each figure is the median of `--repeat` runs; push runs go into fresh datasets. Run from the project root (~2 min):

    .venv/bin/python bench/push_pull.py [--records 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True

import httpx  # noqa: E402
import pyarrow as pa  # noqa: E402

from llm_feedback.annotation.dataset_settings import DatasetSpec  # noqa: E402
from llm_feedback.annotation.embedded import EmbeddedServer, start, stop  # noqa: E402
from llm_feedback.annotation.pull import pull  # noqa: E402
from llm_feedback.annotation.push import push  # noqa: E402
from llm_feedback.annotation.records import build_records  # noqa: E402
from llm_feedback.artifacts import TASKS  # noqa: E402
from llm_feedback.params import Params  # noqa: E402
from llm_feedback.testing.argilla_records import owner_records  # noqa: E402
from llm_feedback.testing.generations import answered  # noqa: E402
from llm_feedback.testing.ports import free_port  # noqa: E402

MODELS = ["model-a", "model-b"]
ANSWER = (
    '```python\ndef solve(items):\n    """Return the items sorted."""\n    return sorted(items)\n\n'
    "assert solve([2, 1]) == [1, 2]\n```\n"
) * 2


def inputs(n: int) -> tuple[pa.Table, pa.Table]:
    ids = [f"{i:016x}" for i in range(n)]
    tasks = TASKS.validate(
        pa.table(
            {
                "task_id": ids,
                "instruction": [f"Task {i}: sort a list of numbers." for i in range(n)],
                "source": ["bench"] * n,
                "source_row": list(range(n)),
            }
        ),
        "tasks",
    )
    return tasks, answered({(t, m): f"# {m} {t}\n{ANSWER}" for t in ids for m in MODELS})


def params(url: str, dataset: str) -> Params:
    return Params.model_validate(
        {
            "argilla": {"url": url},
            "annotation": {
                "dataset": dataset,
                "assignment": "overlap",
                "guidelines": str(ROOT / "annotation/guidelines.md"),
            },
            "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
            "compare": MODELS,
        }
    )


def timed(function):
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


def sdk_log(url: str, api_key: str, dataset_name: str, records: list, settings) -> None:
    import argilla as rg

    client = rg.Argilla(api_url=url, api_key=api_key)
    dataset = rg.Dataset(name=dataset_name, workspace="llm-feedback", settings=settings, client=client).create()
    dataset.records.log(records)


def annotate_all(url: str, api_key: str, dataset_id: str) -> None:
    """One submitted response per record, by the owner, through the bulk endpoint."""
    headers = {"X-Argilla-Api-Key": api_key}
    ids = [record["id"] for record in owner_records(url, api_key, dataset_id)]
    for first in range(0, len(ids), 100):
        items = [
            {
                "record_id": rid,
                "status": "submitted",
                "values": {"score_response_1": {"value": 5}, "score_response_2": {"value": 3}},
            }
            for rid in ids[first : first + 100]
        ]
        httpx.post(
            f"{url}/api/v1/me/responses/bulk", headers=headers, json={"items": items}, timeout=120
        ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    n = args.records
    tasks, generations = inputs(n)

    with tempfile.TemporaryDirectory(prefix="bench-push-pull-") as folder:
        server = EmbeddedServer(data_dir=Path(folder), port=free_port(), venv_dir=ROOT / ".argilla" / "venv")
        credentials, _ = start(server)
        assert credentials is not None
        os.environ["ARGILLA_API_KEY"] = credentials.api_key
        try:
            warm_tasks, warm_generations = inputs(10)
            # imports and first connections, untimed
            push(params(server.url, "warm-up"), tasks=warm_tasks, generations=warm_generations)
            push_new, push_rerun, baseline_push = [], [], []
            receipt = None
            for i in range(args.repeat):
                p = params(server.url, f"ours-{i}")
                seconds, result = timed(partial(push, p, tasks=tasks, generations=generations))
                assert result.created == n
                push_new.append(seconds)
                seconds, again = timed(partial(push, p, tasks=tasks, generations=generations, previous=result.receipt))
                assert again.unchanged == n and again.created == again.updated == 0
                push_rerun.append(seconds)
                receipt = result.receipt
                spec = DatasetSpec.from_params(
                    p.annotation, rubric=p.rubric, responses=len(MODELS), with_executions=False
                )
                built = build_records(
                    tasks, generations=generations, models=MODELS, spec=spec, seed=p.annotation.seed
                ).records
                dicts = [{"id": r.record_id, **r.fields, **r.metadata} for r in built]
                seconds, _ = timed(partial(sdk_log, server.url, credentials.api_key, f"sdk-{i}", dicts, spec.build()))
                baseline_push.append(seconds)

            annotate_all(server.url, credentials.api_key, receipt.dataset_id)
            last = params(server.url, f"ours-{args.repeat - 1}")
            pull_ours, pull_sdk = [], []
            for _ in range(args.repeat):
                seconds, pulled = timed(lambda: pull(last, receipt=receipt))
                assert pulled.table.num_rows == 2 * n
                pull_ours.append(seconds)

                def sdk_pull() -> int:
                    import argilla as rg

                    client = rg.Argilla(api_url=server.url, api_key=credentials.api_key)
                    dataset = client.datasets(name=f"ours-{args.repeat - 1}", workspace="llm-feedback")
                    return sum(1 for _ in dataset.records(with_responses=True))

                seconds, count = timed(sdk_pull)
                assert count == n
                pull_sdk.append(seconds)
        finally:
            stop(server)

    def rate(times: list[float]) -> float:
        return n / statistics.median(times)

    print(f"{n} records x {len(MODELS)} models, median of {args.repeat} runs (records/s; ratio to the SDK baseline)")
    print(
        f"  push (new dataset): {rate(push_new):8.0f}  baseline SDK log: {rate(baseline_push):8.0f}  "
        f"ratio {rate(push_new) / rate(baseline_push):.2f}x"
    )
    print(f"  push (rerun, nothing changed): {rate(push_rerun):8.0f}  ({statistics.median(push_rerun):.1f} s)")
    print(
        f"  pull: {rate(pull_ours):8.0f}  baseline SDK iterator: {rate(pull_sdk):8.0f}  "
        f"ratio {rate(pull_ours) / rate(pull_sdk):.2f}x"
    )


if __name__ == "__main__":
    main()
