"""Table schemas: every column keeps the type it was created with; other values go to typed siblings.

A property gets its column (``p_<name>``) the first time a non-null value of it is seen, typed by that
value (``bool``, ``int64``, ``double``, ``string``; nested values and integers beyond int64 are
``string``, as JSON text). That type never changes, so no data file ever holds a column whose
physical type contradicts the table (Spark, Trino and Athena reject such tables). A later value:

* of the column's type goes into it;
* an integer into a ``double`` column is cast when the double holds it exactly (|n| ≤ 2**53) —
  int → double is the one promotion Iceberg allows that applies here, done to the value, not by
  rewriting the column;
* anything into a ``string`` column is stored as its text (strings as they are, others as JSON);
* any other value goes to the property's **typed sibling** of the value's own type,
  ``<column>__<type>`` (``p_amount__double``, ``p_amount__string``, ``p_amount__bool``,
  ``p_amount__int64``), created on first need. A sibling only ever holds values of its type, so
  where a value lands does not depend on the order in which the types appeared.

Names are injective and stable: property → column names are recorded in the schema
(``properties``: property → {type: column}) and never recomputed. A name that is taken —
case-insensitively, because Glue, Athena and Spark fold case — gets ``__<8 hex of SHA-256>``
(``a.b`` → ``p_a_b``, then ``a_b`` → ``p_a_b__1f2e…``).

Caps (:class:`ShapeLimits`): only the first ``max_properties`` properties of an event, and at most
``max_columns`` property columns per table, become columns; the rest of an event's properties are
kept in its ``_extra`` column (JSON text), never dropped.

An Avro override (``schemas/events/<table>.avsc``) declares columns up front; a table's stored
schema wins over it for properties the table already has.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count, islice
from typing import Any

import orjson

BOOL, INT, DOUBLE, STRING, TIMESTAMP = "bool", "int64", "double", "string", "timestamp"
PROPERTY_PREFIX = "p_"
SIBLING_SEPARATOR = "__"
MAX_NAME_CHARS = 100  # of the property part of a column name (Glue allows 255 in all)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXACT_IN_DOUBLE = 2**53
# Routing-only value classes: an int64 a double cannot hold exactly (stored as int64), and a value
# stored as its JSON text (objects, arrays, integers beyond int64) — never a column's type.
_WIDE_INT, _JSON = "int64_wide", "json"
_STORED_AS = {_WIDE_INT: INT, _JSON: STRING}
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
# The classes that do not depend on the value (an int's does: its range)
_CLASS_OF: dict[type, str] = {str: STRING, float: DOUBLE, bool: BOOL, dict: _JSON, list: _JSON}
_ACCEPTS = {
    BOOL: frozenset({BOOL}),
    INT: frozenset({INT, _WIDE_INT}),
    DOUBLE: frozenset({DOUBLE, INT}),
    STRING: frozenset({BOOL, INT, _WIDE_INT, DOUBLE, STRING, _JSON}),
}


@dataclass(frozen=True)
class ShapeLimits:
    """How much of an event's shape becomes columns (settings ``lake_max_properties_per_event`` and
    ``lake_max_columns_per_table``); what is over goes to ``_extra``."""

    max_properties: int = 200
    max_columns: int = 1000


def value_class(value: Any) -> str | None:
    """How a value is routed to a column; None for null (it fits any column)."""
    kind = _CLASS_OF.get(type(value))
    if kind is not None:
        return kind
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        if -_EXACT_IN_DOUBLE <= value <= _EXACT_IN_DOUBLE:
            return INT
        return _WIDE_INT if _INT64_MIN <= value <= _INT64_MAX else _JSON
    if isinstance(value, float):
        return DOUBLE
    return _JSON


def accepts(column_type: str, value_kind: str) -> bool:
    return value_kind in _ACCEPTS[column_type]


def legacy_column(name: str) -> str:
    """The column name tables written before names were recorded used (``p_`` + sanitised name)."""
    return PROPERTY_PREFIX + _UNSAFE.sub("_", name)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:8]


@dataclass
class TableSchema:
    """A table's property columns (ordered, column → type), which property owns which columns, and
    the history of the columns' creation."""

    columns: dict[str, str] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()
    changes: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, dict[str, str]] = field(default_factory=dict)
    limits: ShapeLimits = field(default_factory=ShapeLimits, compare=False)

    def __post_init__(self) -> None:
        self._taken = {column.lower() for column in self.columns}
        self._claimed = {column for owned in self.properties.values() for column in owned.values()}
        self.routes: dict[tuple[str, str], str] = {}  # (property, value class) → column, a cache

    # --- routing -------------------------------------------------------------------------------------
    def column_for(self, name: str, kind: str, where: str = "") -> str | None:
        """The column a value of ``kind`` of property ``name`` goes to, created when needed; None
        when the table is at its column cap (the value then goes to ``_extra``)."""
        route = self.routes.get((name, kind))
        if route is None:
            route = self._route(name, kind, where)
            if route is not None:  # a cap-refused route is not cached: a merge may add the column
                self.routes[(name, kind)] = route
        return route

    def _route(self, name: str, kind: str, where: str) -> str | None:
        owned = self.properties.get(name) or self._adopt(name)
        column_type = _STORED_AS.get(kind, kind)
        if owned:
            main_type, main = next(iter(owned.items()))
            if accepts(main_type, kind):
                return main
            if column_type in owned:  # a sibling holds only values of its own type
                return owned[column_type]
        if len(self.columns) >= self.limits.max_columns:
            return None
        if owned:
            base = main
            column = self._free_name(f"{base}{SIBLING_SEPARATOR}{column_type}", name, column_type)
            self.changes.append(
                {"column": column, "type": column_type, "property": name, "sibling_of": base, "at": where}
            )
        else:
            column = self._free_name(PROPERTY_PREFIX + _UNSAFE.sub("_", name)[:MAX_NAME_CHARS], name, "")
        self._add(name, column_type, column)
        return column

    def _adopt(self, name: str) -> dict[str, str]:
        """A column of a table written before names were recorded: its ``p_<name>`` column, unless
        another property already owns it."""
        column = legacy_column(name)
        column_type = self.columns.get(column)
        if column_type is None or column in self._claimed:
            return {}
        self.properties[name] = {column_type: column}
        self._claimed.add(column)
        return self.properties[name]

    def _free_name(self, wanted: str, name: str, column_type: str) -> str:
        if wanted.lower() not in self._taken:
            return wanted
        for attempt in count():
            salt = (name, column_type) if attempt == 0 else (name, column_type, str(attempt))
            candidate = f"{wanted}{SIBLING_SEPARATOR}{_digest(*salt)}"
            if candidate.lower() not in self._taken:
                return candidate
        raise AssertionError("unreachable")

    def _add(self, name: str, column_type: str, column: str) -> None:
        self.columns[column] = column_type
        self.properties.setdefault(name, {})[column_type] = column
        self._taken.add(column.lower())
        self._claimed.add(column)

    # --- folding data and other schemas in -----------------------------------------------------------
    def observe(self, properties: Iterable[Mapping[str, Any]], where: str = "") -> bool:
        """Create the columns a batch's properties need; True when the schema changed."""
        before = self.shape()
        limit, routes = self.limits.max_properties, self.routes
        for props in properties:
            for name, value in props.items() if len(props) <= limit else islice(props.items(), limit):
                kind = value_class(value)
                if kind is not None and (name, kind) not in routes:
                    self.column_for(name, kind, where)
        return self.shape() != before

    def would_grow(self, properties: Iterable[Mapping[str, Any]]) -> bool:
        """True when ``observe`` would add a column (or adopt a legacy one) for these properties."""
        limit = self.limits.max_properties
        for props in properties:
            for name, value in islice(props.items(), limit):
                kind = value_class(value)
                if kind is not None and (name, kind) not in self.routes and self._needs_column(name, kind):
                    return True
        return False

    def main_type(self, name: str) -> str | None:
        """The type of the property's main column (a legacy ``p_<name>`` column adopted), or None."""
        owned = self.properties.get(name) or self._adopt(name)
        return next(iter(owned)) if owned else None

    def needs_column(self, name: str, kind: str) -> bool:
        """True when a value of ``kind`` of ``name`` would create a column."""
        self.main_type(name)
        return (name, kind) not in self.routes and self._needs_column(name, kind)

    def shape(self) -> tuple[int, int]:
        """What ``observe`` compares to tell a change: columns, and columns owned by a property."""
        return len(self.columns), len(self._claimed)

    def _needs_column(self, name: str, kind: str) -> bool:
        owned = self.properties.get(name)
        if not owned:
            return True
        main_type = next(iter(owned))
        return not accepts(main_type, kind) and _STORED_AS.get(kind, kind) not in owned

    def merge(self, other: TableSchema) -> bool:
        """Fold another schema of the same table in (a stored one, an override): its columns that do
        not contradict this one's are added; this schema wins every conflict."""
        changed = False
        for name, owned in other.properties.items():
            for column_type, column in owned.items():
                mine = self.properties.get(name) or self._adopt(name)
                if mine.get(column_type) == column and column in self.columns:
                    continue
                if column_type in mine or column.lower() in self._taken:
                    continue  # this schema already decided otherwise for this property or name
                self._add(name, column_type, column)
                changed = True
        for column, column_type in other.columns.items():
            if column not in other._claimed and column.lower() not in self._taken:
                self.columns[column] = column_type  # an unclaimed legacy column
                self._taken.add(column.lower())
                changed = True
        self.declared |= other.declared
        # A change of the other's whose column lost to this schema's decision is not history here.
        self.changes += [
            change
            for change in other.changes
            if change not in self.changes and self.columns.get(change.get("column", "")) == change.get("type")
        ]
        self.routes.clear()
        return changed

    def owners(self) -> dict[str, str]:
        """Property column → the event property it holds."""
        return {column: name for name, owned in self.properties.items() for column in owned.values()}

    # --- persistence ---------------------------------------------------------------------------------
    def to_bytes(self, table: str) -> bytes:
        return orjson.dumps(
            {
                "table": table,
                "property_prefix": PROPERTY_PREFIX,
                "columns": self.columns,
                "properties": self.properties,
                "declared": sorted(self.declared),
                "changes": self.changes[-1000:],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TableSchema:
        doc = orjson.loads(data)
        return cls(
            dict(doc["columns"]),
            frozenset(doc.get("declared", ())),
            list(doc.get("changes", [])),
            {name: dict(owned) for name, owned in doc.get("properties", {}).items()},
        )


_AVRO_TYPES = {
    "boolean": BOOL,
    "int": INT,
    "long": INT,
    "float": DOUBLE,
    "double": DOUBLE,
    "string": STRING,
    "bytes": STRING,
    "enum": STRING,
}


def _avro_type(avro: Any) -> str:
    if isinstance(avro, list):
        non_null = [branch for branch in avro if branch != "null"]
        return _avro_type(non_null[0]) if len(non_null) == 1 else STRING
    if isinstance(avro, dict):
        if avro.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return INT
        return _AVRO_TYPES.get(str(avro.get("type")), STRING)
    return _AVRO_TYPES.get(str(avro), STRING)


def schema_from_avro(avsc: Mapping[str, Any]) -> TableSchema:
    """A table schema whose property columns are declared by an Avro record schema of the properties.

    The record may describe the properties directly, or be an envelope with a ``properties`` record.
    """
    fields = avsc.get("fields", [])
    for candidate in fields:
        inner = candidate.get("type")
        if (
            candidate.get("name") == "properties"
            and isinstance(inner, dict)
            and inner.get("type") == "record"
        ):
            fields = inner.get("fields", [])
            break
    schema = TableSchema()
    for declared in fields:
        name = str(declared["name"])
        column = schema._free_name(PROPERTY_PREFIX + _UNSAFE.sub("_", name)[:MAX_NAME_CHARS], name, "")
        schema._add(name, _avro_type(declared["type"]), column)
    schema.declared = frozenset(schema.columns)
    return schema
