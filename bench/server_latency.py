"""Latency of what the web UI asks while annotating, over HTTP, at a given dataset size.

    .venv/bin/python bench/server_latency.py --records 50000 \
        --server-python .argilla/venv/bin/python

Logs N pipeline-like records (10% answered by annotator 1, 5% by annotator 2), then times each request the UI
sends (as annotator 1, `include=responses&include=suggestions`, 10 records a page) and prints p50/p95 in ms.
Targets: default listing p95 < 100 ms, text search p95 < 200 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server_common import pipeline_like_records, pipeline_like_settings, running_server

UI_PARAMS = [("include", "responses"), ("include", "suggestions"), ("offset", "0"), ("limit", "10")]


def status_filter(status: str) -> list[dict]:
    filters = [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": [status]}]
    if status == "pending":
        filters.append({"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]})
    return filters


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]


def measure(url: str, api_key: str, dataset_name: str, records: int, repeats: int) -> None:
    import requests

    base = f"{url}/api/v1"
    owner = requests.Session()
    owner.headers["X-Argilla-Api-Key"] = api_key
    keys = {u["username"]: u["api_key"] for u in owner.get(f"{base}/users").json()["items"]}
    ann = requests.Session()
    ann.headers["X-Argilla-Api-Key"] = keys["ann1"]
    ds = next(d["id"] for d in owner.get(f"{base}/me/datasets").json()["items"] if d["name"] == dataset_name)
    properties = {p["name"]: p["id"] for p in owner.get(f"{base}/me/datasets/{ds}/metadata-properties").json()["items"]}

    def search(filters, text=None, sort=None):
        body = {"query": {}, "filters": {"and": filters}}
        if text:
            body["query"]["text"] = {"q": text}
        if sort:
            body["sort"] = sort
        response = ann.post(f"{base}/me/datasets/{ds}/records/search", json=body, params=UI_PARAMS)
        response.raise_for_status()
        return response.json()

    pending = [i["record"]["id"] for i in search(status_filter("pending"))["items"]]
    to_submit = iter(
        i["record"]["id"]
        for i in ann.post(
            f"{base}/me/datasets/{ds}/records/search",
            json={"filters": {"and": status_filter("pending")}},
            params=[("offset", "100"), ("limit", "500")],
        ).json()["items"]
    )
    assert pending

    def submit():
        response = ann.post(
            f"{base}/records/{next(to_submit)}/responses",
            json={"values": {"score_response_1": {"value": 3}, "score_response_2": {"value": 4}},
                  "status": "submitted"},
        )  # fmt: skip
        assert response.status_code == 201, response.text

    checks = {
        "UI default listing (pending)": lambda: search(status_filter("pending")),
        "text search, common word": lambda: search(status_filter("pending"), text="function"),
        "text search, two words": lambda: search(status_filter("pending"), text="recursion memory"),
        "text search, rare/no match": lambda: search(status_filter("pending"), text="zyzzyva"),
        "metadata filter + sort": lambda: search(
            status_filter("pending")
            + [{"type": "terms", "scope": {"entity": "metadata", "metadata_property": "group"}, "values": ["g1"]}],
            sort=[{"scope": {"entity": "metadata", "metadata_property": "length"}, "order": "desc"}],
        ),
        "suggestion score range": lambda: search(
            status_filter("pending")
            + [
                {
                    "type": "range",
                    "ge": 0.2,
                    "le": 0.4,
                    "scope": {"entity": "suggestion", "question": "score_response_1", "property": "score"},
                }
            ],
        ),
        "submitted view": lambda: search(status_filter("submitted")),
        "response submit": submit,
        "progress (home page)": lambda: ann.get(f"{base}/datasets/{ds}/progress").raise_for_status(),
        "my metrics": lambda: ann.get(f"{base}/me/datasets/{ds}/metrics").raise_for_status(),
        "metadata metrics (3 properties)": lambda: [
            ann.get(f"{base}/metadata-properties/{pid}/metrics").raise_for_status() for pid in properties.values()
        ],
    }
    print(f"{'request':34s} {'p50 ms':>8s} {'p95 ms':>8s}   ({records} records)")
    for label, check in checks.items():
        p50, p95 = timed(check, repeats)
        print(f"{label:34s} {p50:8.1f} {p95:8.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    import argilla as rg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--server-python", default=".argilla/venv/bin/python", help="the server venv's interpreter")
    parser.add_argument("--url", help="measure a running server instead (its dataset `latency`, users ann1/ann2)")
    parser.add_argument("--api-key", help="the owner's API key, with --url")
    args = parser.parse_args(argv)
    if args.url:
        measure(args.url, args.api_key, "latency", args.records, args.repeats)
        return 0

    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as folder,
        running_server(args.server_python, Path(folder)) as server,
    ):
        client = rg.Argilla(api_url=server.url, api_key=server.api_key, timeout=600, retries=1)
        workspace = rg.Workspace(name="bench", client=client).create()
        settings = pipeline_like_settings()
        dataset = rg.Dataset(name="latency", workspace=workspace, settings=settings, client=client).create()
        users = []
        for name in ("ann1", "ann2"):
            user = rg.User(username=name, password="annotator-password", role="annotator", client=client).create()
            user.add_to_workspace(workspace)
            users.append(user)
        records = pipeline_like_records(args.records)
        for i, record in enumerate(records):
            for user, every in zip(users, (10, 20), strict=False):
                if i % every == 0:
                    record.responses.add(rg.Response("score_response_1", i % 8, user_id=user.id))
                    record.responses.add(rg.Response("score_response_2", (i + 3) % 8, user_id=user.id))
        start = time.perf_counter()
        dataset.records.log(records, batch_size=500)
        print(f"logged {args.records} records in {time.perf_counter() - start:.0f} s", flush=True)

        measure(server.url, server.api_key, "latency", args.records, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
