"""Every record of a dataset as the server holds it, with responses and suggestions, read page by page over REST.

The SDK's own iterator goes through the search engine one small page at a time and fails on a discarded response
without values, so push and pull read Argilla's plain listing endpoint instead (owner or admin key)."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from llm_feedback.errors import PipelineError

PAGE_SIZE = 1000  # the endpoint's maximum


@dataclass(frozen=True)
class ServerRecord:
    uuid: str
    record_id: str  # Argilla's external id: our record id
    fields: dict
    metadata: dict
    suggestions: frozenset[tuple[str, object, str | None]]  # (question name, value, agent)
    responses: tuple[dict, ...]  # as the API returns them: user_id, status, values, updated_at

    @property
    def annotated(self) -> bool:
        """Someone has answered it (submitted, draft or discarded): its content must not change under them."""
        return bool(self.responses)

    @property
    def submitted(self) -> bool:
        return any(r["status"] == "submitted" for r in self.responses)


def list_records(client, dataset_id: str, question_names: dict[str, str], what: str) -> list[ServerRecord]:
    """All records, in insertion order. `question_names` maps question ids to names (for suggestions)."""
    http = client.http_client
    records: dict[str, ServerRecord] = {}
    offset, total = 0, None
    with tqdm(desc=what, unit=" records", disable=None, leave=False) as bar:
        while total is None or offset < total:
            response = http.get(
                f"/api/v1/datasets/{dataset_id}/records",
                params={"include": "responses,suggestions", "offset": offset, "limit": PAGE_SIZE},
            )
            response.raise_for_status()
            page = response.json()
            total = page["total"]
            bar.total = total
            items = page["items"]
            for item in items:
                records[item["id"]] = _server_record(item, question_names)
            bar.update(len(items))
            if not items:
                break
            offset += len(items)
    if len(records) != total:
        raise PipelineError(
            f"the dataset changed while it was being read ({len(records)} of {total} records); run again"
        )
    return list(records.values())


def _server_record(item: dict, question_names: dict[str, str]) -> ServerRecord:
    suggestions = frozenset(
        (question_names.get(s["question_id"], s["question_id"]), s["value"], s.get("agent"))
        for s in item.get("suggestions") or ()
    )
    return ServerRecord(
        uuid=item["id"],
        record_id=item.get("external_id") or item["id"],
        fields=item.get("fields") or {},
        metadata=item.get("metadata") or {},
        suggestions=suggestions,
        responses=tuple(item.get("responses") or ()),
    )
