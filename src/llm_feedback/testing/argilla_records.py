"""What an Argilla dataset holds, read over REST as its owner sees it (not through the code under test)."""

from __future__ import annotations

import httpx


def owner_records(url: str, api_key: str, dataset_id: str) -> list[dict]:
    """Every record of a dataset as the owner sees it (uuid, external id, fields, responses)."""
    items, offset = [], 0
    while True:
        page = httpx.get(
            f"{url}/api/v1/datasets/{dataset_id}/records",
            headers={"X-Argilla-Api-Key": api_key},
            params={"include": "responses", "offset": offset, "limit": 1000},
        ).json()
        items += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return items
