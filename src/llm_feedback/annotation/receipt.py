"""The push receipt (`data/push.json`): which server and dataset hold the annotations, and the blinding map that pull
needs to put each score back on its model. It never holds a key."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llm_feedback.artifacts import atomic_path
from llm_feedback.errors import InputError

RECEIPT_VERSION = 1


@dataclass(frozen=True)
class Receipt:
    url: str
    workspace: str
    dataset: str
    dataset_id: str
    models: list[str]
    records: int
    settings_hash: str
    content_hash: str
    # record id -> {"task_id": ..., "models": [model shown as Response 1, Response 2, ...]}
    blinding: dict[str, dict] = field(default_factory=dict)
    version: int = RECEIPT_VERSION

    def orders(self) -> dict[str, list[str]]:
        return {record_id: entry["models"] for record_id, entry in self.blinding.items()}

    def write(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def same_dataset(self, url: str, workspace: str, dataset: str) -> bool:
        return (self.url, self.workspace, self.dataset) == (url, workspace, dataset)


def read_receipt(path: Path) -> Receipt:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found (run the push stage first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != RECEIPT_VERSION:
            raise InputError(f"{path}: receipt version {data.get('version')!r}, expected {RECEIPT_VERSION} (run push again)")
        return Receipt(**data)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: not a push receipt ({str(e).splitlines()[0][:120]}); run push again") from None
