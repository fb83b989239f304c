"""Argilla's search filters and sort orders as SQL over `records r`, with the semantics of Elasticsearch's mapping.

Mirrors search_engine/commons.py: metadata terms are keywords (a list matches if any item does), integer/float are
numbers; response and suggestion values are searchable for rating (numbers), label and multi-label questions (keywords)
only, other question types match nothing; a response status filter is per user when the scope names one, "pending"
meaning "no response (by that user)". Missing values sort last, as in Elasticsearch.

Speed: every filter on another table (or on metadata) is a set of record rowids, `r.rowid IN (subquery)`, built from
an index: a correlated EXISTS made SQLite scan every response for every record (30x slower), and integer sets probe
faster than sets of 32-character ids. Responses and suggestions reach their record's rowid through the primary-key
index (`CROSS JOIN records rr ON rr.id = x.record_id`), which holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    MetadataFilterScope,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SuggestionFilterScope,
    TermsFilter,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from annotation_server.catalog import Catalog
from annotation_server.indexes import list_range
from annotation_server.sqlbits import Params, as_number, member, numeric_variants, uuid_hex

NOTHING = "0"
EVERYTHING = "1"
_RECORD_COLUMNS = {
    "id": "r.id",
    "external_id": "r.external_id",
    "inserted_at": "r.inserted_at",
    "updated_at": "r.updated_at",
    "status": "r.status",
}
_NUMERIC_QUESTIONS = {"rating"}
_KEYWORD_QUESTIONS = {"label_selection", "multi_label_selection"}
_LIST_VALUES = {"multi_label_selection", "ranking", "span"}  # questions whose values are lists
_LIST_SCORES = {"multi_label_selection", "ranking", "span"}  # ... and whose suggestion scores may be lists


class FilterBuilder:
    """Builds SQL for one search; holds the bound parameters it used."""

    def __init__(self, conn: AsyncConnection, catalog: Catalog, params: Params) -> None:
        self.conn = conn
        self.catalog = catalog
        self.p = params

    # ---- filters ---------------------------------------------------------------------------------------------------

    async def condition(self, filter: Filter | None) -> str:
        if filter is None:
            return EVERYTHING
        if isinstance(filter, AndFilter):
            parts = [await self.condition(f) for f in filter.filters]
            parts = [part for part in parts if part != EVERYTHING]
            return "(" + " AND ".join(parts) + ")" if parts else EVERYTHING
        scope = filter.scope
        if isinstance(scope, RecordFilterScope):
            return self._record(filter, scope.property)
        if isinstance(scope, MetadataFilterScope):
            return await self._metadata(filter, scope.metadata_property)
        if isinstance(scope, ResponseFilterScope):
            return self._response(filter, scope)
        if isinstance(scope, SuggestionFilterScope):
            return self._suggestion(filter, scope)
        raise ValueError(f"Cannot process request for search scope {scope}")

    def _record(self, filter: Filter, prop: str) -> str:
        column = _RECORD_COLUMNS.get(str(prop))
        if column is None:
            raise ValueError(f"Cannot process request for search scope {prop}")
        convert = _record_value_converter(str(prop))
        if isinstance(filter, TermsFilter):
            values = [v for v in (convert(value) for value in filter.values) if v is not None]
            return f"{column} IN ({self.p.many(values)})"
        return self._range(column, filter, convert)

    async def _metadata(self, filter: Filter, key: str) -> str:
        kind = self.catalog.metadata_types.get(key)
        if kind is None:
            return NOTHING
        value, json_value = member("x.metadata", key)
        numeric = kind in ("integer", "float")
        scope = f"x.dataset_id = {self.p(self.catalog.dataset_hex)}"
        if isinstance(filter, TermsFilter):
            values = _numbers(filter.values) if numeric else numeric_variants(filter.values)
            scalar = f"{value} IN ({self.p.many(values)})"
            item = f"value IN ({self.p.many(values)})"
        else:
            convert = as_number if numeric else str
            scalar = self._range(value, filter, convert)
            item = self._range("value", filter, convert)
            if numeric:  # a list's JSON text sorts after every number in SQLite: keep to numbers
                scalar = f"({scalar} AND typeof({value}) IN ('integer', 'real'))"
        sql = f"SELECT x.rowid FROM records x WHERE {scope} AND {scalar}"
        if await self.catalog.metadata_has_lists(self.conn, key):
            sql += (
                f" UNION ALL SELECT x.rowid FROM records x WHERE {scope} AND {list_range(value)}"
                f" AND json_type{json_value} = 'array'"
                f" AND EXISTS (SELECT 1 FROM json_each({value}) WHERE {item})"
            )
        return f"r.rowid IN ({sql})"

    def _response(self, filter: Filter, scope: ResponseFilterScope) -> str:
        user = scope.user.id.hex if scope.user is not None else None
        if scope.question:
            question = self.catalog.question(scope.question)
            if question is None:
                return NOTHING
            _, json_values = member('x."values"', scope.question)
            condition = self._value(
                filter,
                question.type,
                f"({json_values} ->> 'value')",
                f"({json_values} -> 'value')" if question.type in _LIST_VALUES else None,
            )
            if condition == NOTHING:
                return NOTHING
            by_user = f" AND x.user_id = {self.p(user)}" if user else ""
            return f"r.rowid IN ({_records_of('responses x', f'{condition}{by_user}')})"
        if scope.property == "status" and isinstance(filter, TermsFilter):
            return self._response_status(list(filter.values), user)
        raise ValueError(f"Cannot process filter scope {scope}")

    def _response_status(self, values: list[str], user: str | None) -> str:
        parts = []
        if "pending" in values:
            values = [v for v in values if v != "pending"]
            answered = f"x.user_id = {self.p(user)}" if user else EVERYTHING
            parts.append(f"r.rowid NOT IN ({_records_of('responses x', answered)})")
            if not values:
                return parts[0]
        conditions = []
        if values:
            conditions.append(f"x.status IN ({self.p.many(values)})")
        if user:
            conditions.append(f"x.user_id = {self.p(user)}")
        if conditions:
            parts.append(f"r.rowid IN ({_records_of('responses x', ' AND '.join(conditions))})")
        else:
            parts.append(EVERYTHING)
        return "(" + " OR ".join(parts) + ")"

    def _suggestion(self, filter: Filter, scope: SuggestionFilterScope) -> str:
        question = self.catalog.question(scope.question)
        if question is None:
            return NOTHING
        prop = str(scope.property)
        if prop == "value":
            lists = question.type in _LIST_VALUES
            condition = self._value(filter, question.type, "(s.value ->> '$')", "s.value" if lists else None)
        elif prop == "score":
            lists = question.type in _LIST_SCORES
            condition = self._value(filter, "rating", "(s.score ->> '$')", "s.score" if lists else None)
        elif prop in ("agent", "type"):
            condition = self._value(filter, "label_selection", f"s.{prop}")
        else:
            return NOTHING
        if condition == NOTHING:
            return NOTHING
        where = f"s.question_id = {self.p(question.id_hex)} AND {condition}"
        return f"r.rowid IN ({_records_of('suggestions s', where)})"

    def _value(self, filter: Filter, question_type: str, value: str, json_value: str | None = None) -> str:
        """A response/suggestion value test; lists (multi-label values, per-span scores) match if any item does.

        `value` is the SQL value, `json_value` the same as JSON text when it may hold a list (else None).
        """
        if question_type in _NUMERIC_QUESTIONS:
            convert, make_values, numeric = as_number, _numbers, True
        elif question_type in _KEYWORD_QUESTIONS:
            convert, make_values, numeric = str, numeric_variants, False
        else:
            return NOTHING  # text, ranking, span: Elasticsearch did not index them (`enabled: false`)
        if isinstance(filter, TermsFilter):
            values = make_values(filter.values)
            scalar = f"{value} IN ({self.p.many(values)})"
            item = f"value IN ({self.p.many(values)})"
        else:
            scalar = self._range(value, filter, convert)
            item = self._range("value", filter, convert)
            if numeric:
                scalar = f"({scalar} AND typeof({value}) IN ('integer', 'real'))"
        if json_value is None:
            return scalar
        return (
            f"(CASE WHEN json_type({json_value}) = 'array' "
            f"THEN EXISTS (SELECT 1 FROM json_each({json_value}) WHERE {item}) ELSE {scalar} END)"
        )

    def _range(self, column: str, filter: RangeFilter, convert) -> str:
        parts = []
        if filter.ge is not None:
            parts.append(f"{column} >= {self.p(convert(filter.ge))}")
        if filter.le is not None:
            parts.append(f"{column} <= {self.p(convert(filter.le))}")
        return "(" + " AND ".join(parts) + ")" if parts else EVERYTHING

    # ---- sorting ---------------------------------------------------------------------------------------------------

    async def order_by(self, orders: list[Order]) -> list[str]:
        """ORDER BY terms; each key sorts its missing values last, in both directions (Elasticsearch's default)."""
        terms = []
        for order in orders:
            descending = str(order.order) == "desc"
            key = await self._sort_key(order, descending)
            terms.append(f"{key} {'DESC' if descending else 'ASC'} NULLS LAST")
        return terms

    async def _sort_key(self, order: Order, descending: bool) -> str:
        scope = order.scope
        pick = "max" if descending else "min"  # Elasticsearch's default sort mode for lists
        if isinstance(scope, RecordFilterScope):
            column = _RECORD_COLUMNS.get(str(scope.property))
            if column is None:
                raise ValueError(f"Cannot sort by record property {scope.property}")
            return column
        if isinstance(scope, MetadataFilterScope):
            value, json_value = member("r.metadata", scope.metadata_property)
            if await self.catalog.metadata_has_lists(self.conn, scope.metadata_property):
                return (
                    f"CASE WHEN json_type{json_value} = 'array' "
                    f"THEN (SELECT {pick}(value) FROM json_each({value})) ELSE {value} END"
                )
            return value
        if isinstance(scope, SuggestionFilterScope):
            question = self.catalog.question(scope.question)
            prop = str(scope.property)
            if question is None or prop not in ("value", "score", "agent", "type"):
                return "NULL"
            if prop in ("value", "score"):
                key = (
                    f"CASE WHEN json_type(s.{prop}) = 'array' "
                    f"THEN (SELECT {pick}(value) FROM json_each(s.{prop})) ELSE (s.{prop} ->> '$') END"
                )
            else:
                key = f"s.{prop}"
            return (
                f"(SELECT {key} FROM suggestions s "
                f"WHERE s.record_id = r.id AND s.question_id = {self.p(question.id_hex)})"
            )
        if isinstance(scope, ResponseFilterScope):
            by_user = f" AND x.user_id = {self.p(scope.user.id.hex)}" if scope.user is not None else ""
            if scope.question:
                question = self.catalog.question(scope.question)
                if question is None:
                    return "NULL"
                _, json_values = member('x."values"', scope.question)
                mode = "avg" if question.type in _NUMERIC_QUESTIONS else pick  # commons.py sorts with mode "avg"
                column = f"({json_values} ->> 'value')"
            else:
                mode, column = pick, "x.status"
            return f"(SELECT {mode}({column}) FROM responses x WHERE x.record_id = r.id{by_user})"
        raise ValueError(f"Cannot sort by scope {scope}")


def _records_of(table: str, where: str) -> str:
    """Rowids of the records that rows of `table` (alias x or s, with a `record_id`) passing `where` belong to.

    CROSS JOIN fixes the join order (SQLite keeps it as written): from the filtered rows to their records by primary
    key; the planner, without statistics, sometimes scanned the whole records table first.
    """
    alias = table.split()[-1]
    condition = "" if where == EVERYTHING else f" WHERE {where}"
    return f"SELECT rr.rowid FROM {table} CROSS JOIN records rr ON rr.id = {alias}.record_id{condition}"


def _numbers(values: list[str]) -> list[Any]:
    return [n for n in (as_number(v) for v in values) if n is not None]


def _record_value_converter(prop: str):
    if prop == "id":
        return uuid_hex
    if prop in ("inserted_at", "updated_at"):
        return sql_datetime
    return lambda value: None if value is None else str(value)


def sql_datetime(value: Any) -> str | None:
    """A date as SQLAlchemy stores it in SQLite (naive UTC); input as ISO text or epoch milliseconds (like ES)."""
    if value is None:
        return None
    number = as_number(value)
    if number is not None:
        moment = datetime.fromtimestamp(number / 1000, tz=UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
