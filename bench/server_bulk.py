"""Bulk logging through the SDK, stock Argilla (`--no-speedups`) against our patched bulk path, on the same machine.

Run with the pipeline's venv (it has the `argilla` SDK); the server runs from its own venv:

    .venv/bin/python bench/server_bulk.py --records 10000 \
        --server-python .argilla/venv/bin/python

Prints records/s for both (and the server process's CPU seconds, steadier than the wall clock on a busy machine)
and the ratio, and checks both servers stored the same records (fields, metadata,
suggestions, status), ignoring generated ids and timestamps. `--compare LABEL=PYTHON` adds another build of the
server (e.g. a venv installed from an earlier commit's annotation_server/), run with its speed-ups in the same run:

    .venv/bin/python bench/server_bulk.py --compare before=/tmp/venv-before/bin/python
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server_common import pipeline_like_records, pipeline_like_settings, running_server


def log_records(server, records: int, batch_size: int) -> tuple[float, float, list[tuple]]:
    """(wall seconds, server CPU seconds, what the server stored)."""
    import argilla as rg
    import psutil

    client = rg.Argilla(api_url=server.url, api_key=server.api_key, retries=1, timeout=600)
    workspace = rg.Workspace(name="bench", client=client).create()
    dataset = rg.Dataset(name="bulk", workspace=workspace, settings=pipeline_like_settings(), client=client).create()
    rows = pipeline_like_records(records)
    process = psutil.Process(server.pid)
    start, cpu_start = time.perf_counter(), sum(process.cpu_times()[:2])
    dataset.records.log(rows, batch_size=batch_size)
    elapsed, cpu = time.perf_counter() - start, sum(process.cpu_times()[:2]) - cpu_start
    stored = sorted(
        (
            r.id,
            tuple(sorted(r.fields.items())),
            tuple(sorted((k, str(v)) for k, v in r.metadata.items())),
            tuple(sorted((s.question_name, str(s.value), s.score, s.agent) for s in r.suggestions)),
            r.status,
        )
        for r in dataset.records(with_suggestions=True, with_responses=False)
    )
    return elapsed, cpu, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256, help="the SDK's default")
    parser.add_argument("--server-python", default=".argilla/venv/bin/python", help="the server venv's interpreter")
    parser.add_argument(
        "--compare", action="append", default=[], metavar="LABEL=PYTHON",
        help="another server venv's interpreter to run with its speed-ups, printed against the same stock run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    runs = [("stock", args.server_python, ("--no-speedups",)), ("patched", args.server_python, ())]
    runs += [(label, python, ()) for label, _, python in (item.partition("=") for item in args.compare)]
    results = {}
    for label, python, extra in runs:
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as folder,
            running_server(python, Path(folder), extra) as server,
        ):
            elapsed, cpu, stored = log_records(server, args.records, args.batch_size)
        results[label] = (elapsed, cpu, stored)
        print(
            f"{label:9s} {args.records} records in {elapsed:6.1f} s = {args.records / elapsed:6.1f} records/s; "
            f"server CPU {cpu:6.1f} s = {args.records / cpu:6.1f} records/CPU-s",
            flush=True,
        )
    stock_elapsed, stock_cpu, stock_stored = results.pop("stock")
    same = True
    for label, (elapsed, cpu, stored) in results.items():
        identical = stored == stock_stored
        same &= identical
        print(
            f"{label}/stock speed: {stock_elapsed / elapsed:.1f}x (CPU: {stock_cpu / cpu:.1f}x); "
            f"stored results identical: {identical}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
