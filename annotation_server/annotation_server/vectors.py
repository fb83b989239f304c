"""Brute-force cosine similarity with numpy over a dataset's vectors (Argilla's `vectors` table).

Scores follow Elasticsearch's `cosine` similarity for dense vectors: (1 + cos) / 2. "Least similar" searches with
the negated vector, as commons.py does. Each vector settings' matrix is parsed from JSON once and cached in the
process until a write to its dataset (index_records, delete_records, delete_index) drops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclasses.dataclass(frozen=True)
class VectorMatrix:
    record_ids: np.ndarray  # record id hex strings (object array)
    unit_rows: np.ndarray  # float32, each row scaled to length 1 (zero rows stay zero)


_lock = threading.Lock()
_cache: dict[str, dict[str, VectorMatrix]] = {}  # dataset hex -> vector settings hex -> matrix
_generation: dict[str, int] = {}  # dataset hex -> bumped on every write


def invalidate(dataset_hex: str) -> None:
    with _lock:
        _generation[dataset_hex] = _generation.get(dataset_hex, 0) + 1
        _cache.pop(dataset_hex, None)


async def matrix(conn: AsyncConnection, dataset_hex: str, settings_hex: str, dimensions: int) -> VectorMatrix:
    with _lock:
        cached = _cache.get(dataset_hex, {}).get(settings_hex)
        generation = _generation.get(dataset_hex, 0)
    if cached is not None:
        return cached
    rows = (
        await conn.exec_driver_sql(
            "SELECT record_id, value FROM vectors WHERE vector_settings_id = :vs", {"vs": settings_hex}
        )
    ).all()
    # Parsing tens of thousands of JSON vectors takes a while: off the event loop, so other requests go on.
    ids, values = await asyncio.to_thread(_parse, rows, dimensions)
    built = VectorMatrix(ids, values)
    with _lock:
        if _generation.get(dataset_hex, 0) == generation:
            _cache.setdefault(dataset_hex, {})[settings_hex] = built
    return built


def _parse(rows: Sequence[tuple[str, str]], dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([row[0] for row in rows], dtype=object)
    try:  # one json.loads for all rows is several times faster than one per row
        values = np.asarray(json.loads("[" + ",".join(row[1] for row in rows) + "]"), dtype=np.float32)
        if values.shape != (len(rows), dimensions):
            raise ValueError("ragged")
    except ValueError:
        values = np.zeros((len(rows), dimensions), dtype=np.float32)
        for i, row in enumerate(rows):
            vector = json.loads(row[1])
            if len(vector) == dimensions:
                values[i] = vector
    return ids, _unit_rows(values.reshape(len(rows), dimensions))


def _unit_rows(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return values / norms


def nearest(
    data: VectorMatrix,
    query: Sequence[float],
    k: int,
    allowed: set[str] | None = None,
    excluded: str | None = None,
) -> list[tuple[str, float]]:
    """The k best (record id hex, score) by cosine similarity to `query`, best first, ties by record order."""
    if len(data.record_ids) == 0 or k <= 0:
        return []
    vector = np.asarray(query, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm == 0 or vector.shape[0] != data.unit_rows.shape[1]:
        return []
    scores = (1.0 + data.unit_rows @ (vector / norm)) / 2.0
    mask = np.ones(len(scores), dtype=bool)
    if allowed is not None:
        mask &= np.fromiter((rid in allowed for rid in data.record_ids), dtype=bool, count=len(scores))
    if excluded is not None:
        mask &= data.record_ids != excluded
    candidates = np.flatnonzero(mask)
    if len(candidates) == 0:
        return []
    candidate_scores = scores[candidates]
    if len(candidates) > k:
        top = np.argpartition(-candidate_scores, k - 1)[:k]
    else:
        top = np.arange(len(candidates))
    order = top[np.lexsort((candidates[top], -candidate_scores[top]))]
    return [(str(data.record_ids[candidates[i]]), float(candidate_scores[i])) for i in order]
