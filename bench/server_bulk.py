"""Bulk logging through the SDK, stock Argilla (`--no-speedups`) against our patched bulk path, on the same machine.

Run with the pipeline's venv (it has the `argilla` SDK); the server runs from its own venv:

    .venv/bin/python bench/server_bulk.py --records 10000 \
        --server-python .argilla/venv/bin/python

Prints records/s for both and the ratio, and checks both servers stored the same records (fields, metadata,
suggestions, status), ignoring generated ids and timestamps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server_common import pipeline_like_records, pipeline_like_settings, running_server  # noqa: E402


def log_records(server, records: int, batch_size: int) -> tuple[float, list[tuple]]:
    import argilla as rg

    client = rg.Argilla(api_url=server.url, api_key=server.api_key, retries=1, timeout=600)
    workspace = rg.Workspace(name="bench", client=client).create()
    dataset = rg.Dataset(name="bulk", workspace=workspace, settings=pipeline_like_settings(), client=client).create()
    rows = pipeline_like_records(records)
    start = time.perf_counter()
    dataset.records.log(rows, batch_size=batch_size)
    elapsed = time.perf_counter() - start
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
    return elapsed, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256, help="the SDK's default")
    parser.add_argument("--server-python", default=".argilla/venv/bin/python", help="the server venv's interpreter")
    args = parser.parse_args(argv)
    results = {}
    for label, extra in (("stock", ("--no-speedups",)), ("patched", ())):
        with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as folder:
            with running_server(args.server_python, Path(folder), extra) as server:
                elapsed, stored = log_records(server, args.records, args.batch_size)
        results[label] = (elapsed, stored)
        print(
            f"{label:8s} {args.records} records in {elapsed:7.1f} s = {args.records / elapsed:7.1f} records/s",
            flush=True,
        )
    same = results["stock"][1] == results["patched"][1]
    ratio = results["stock"][0] / results["patched"][0]
    print(f"patched/stock speed: {ratio:.1f}x; stored results identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
