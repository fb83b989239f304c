"""What a query needs to know about a dataset, read from Argilla's tables (questions, metadata properties).

The engine receives ORM objects whose relationships may not be loaded (lazy loading is not allowed in async code),
so it reads the few settings it needs itself, with one small query each.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server.indexes import list_range
from annotation_server.sqlbits import member


@dataclasses.dataclass(frozen=True)
class QuestionInfo:
    id_hex: str
    type: str  # rating, label_selection, multi_label_selection, text, ranking, span


@dataclasses.dataclass
class Catalog:
    dataset_hex: str
    questions: dict[str, QuestionInfo]
    metadata_types: dict[str, str]  # property name -> terms | integer | float
    _list_keys: dict[str, bool] = dataclasses.field(default_factory=dict)

    @classmethod
    async def load(cls, conn: AsyncConnection, dataset_hex: str) -> Catalog:
        questions = await conn.exec_driver_sql(
            "SELECT name, id, json_extract(settings, '$.type') FROM questions WHERE dataset_id = :ds",
            {"ds": dataset_hex},
        )
        metadata = await conn.exec_driver_sql(
            "SELECT name, json_extract(settings, '$.type') FROM metadata_properties WHERE dataset_id = :ds",
            {"ds": dataset_hex},
        )
        return cls(
            dataset_hex,
            {name: QuestionInfo(qid, qtype) for name, qid, qtype in questions},
            {name: mtype for name, mtype in metadata},
        )

    def question(self, name: str) -> QuestionInfo | None:
        return self.questions.get(name)

    async def metadata_has_lists(self, conn: AsyncConnection, key: str) -> bool:
        """Whether any record holds a list for this metadata key (decides if list-aware SQL is needed)."""
        if key not in self._list_keys:
            value, json_value = member("r.metadata", key)
            row = await conn.exec_driver_sql(
                f"SELECT EXISTS (SELECT 1 FROM records r WHERE r.dataset_id = :ds AND {list_range(value)} "
                f"AND json_type{json_value} = 'array')",
                {"ds": self.dataset_hex},
            )
            self._list_keys[key] = bool(row.scalar())
        return self._list_keys[key]
