"""Benchmark of the embedded annotation server, stock Argilla as the baseline in the same run:

1. bulk logging of 10k records through the SDK: stock bulk path (`--no-speedups`) against ours, with identical stored
   results checked (bench/server_bulk.py);
2. what the web UI asks while annotating, p50/p95 in ms, at 10k and 50k records: default listing, text search,
   metadata filter + sort, submitted view, response submit, progress, metrics (bench/server_latency.py).

    .venv/bin/python bench/server.py [--bulk-records 10000] [--sizes 10000 50000]

The server runs from its own venv, built on first use into .argilla/venv (as `llm-feedback server start` does).
About 15 minutes on 2 cores, most of it logging the 50k records and the stock run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import server_bulk, server_latency  # noqa: E402
from llm_feedback.annotation.embedded import EmbeddedServer, ensure_venv  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk-records", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()
    python = str(ensure_venv(EmbeddedServer(data_dir=ROOT / ".argilla")))
    failed = server_bulk.main(["--records", str(args.bulk_records), "--server-python", python])
    for size in args.sizes:
        failed |= server_latency.main(["--records", str(size), "--server-python", python])
    return failed


if __name__ == "__main__":
    sys.exit(main())
