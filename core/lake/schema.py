"""Table schemas: inferred from the data, widened on conflict, optionally fixed by an Avro schema.

Column types form a small lattice: ``bool``, ``int64``, ``double``, ``string``. A conflict between
``int64`` and ``double`` widens to ``double``; any other conflict falls back to ``string``. Widening
is recorded in the schema's ``changes`` and is never fatal. Nested values (lists, maps) are stored
as JSON text. A column that an Avro override declares keeps its declared type; properties the
override does not declare are still inferred, so no value is dropped.

Property columns are named ``p_<property>`` (characters outside ``[A-Za-z0-9_]`` become ``_``) so
they can never clash with the envelope columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

BOOL, INT, DOUBLE, STRING, TIMESTAMP = "bool", "int64", "double", "string", "timestamp"
PROPERTY_PREFIX = "p_"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@lru_cache(maxsize=65_536)
def column_for_property(name: str) -> str:
    return PROPERTY_PREFIX + _UNSAFE.sub("_", name)


def type_of(value: Any) -> str | None:
    """The lattice type of one JSON value; None for null (carries no type information)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT if _INT64_MIN <= value <= _INT64_MAX else STRING
    if isinstance(value, float):
        return DOUBLE
    return STRING


def merge_types(current: str, seen: str) -> str:
    if current == seen:
        return current
    if {current, seen} == {INT, DOUBLE}:
        return DOUBLE
    return STRING


@dataclass
class TableSchema:
    """A table's property columns (ordered, name → type) and the history of type changes."""

    columns: dict[str, str] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()
    changes: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, properties: Iterable[Mapping[str, Any]], where: str = "") -> bool:
        """Fold a batch's properties into the schema; return True when the schema changed."""
        seen: dict[str, str] = {}
        conflicts: dict[str, tuple[str, str]] = {}
        for props in properties:
            for name, value in props.items():
                kind = type_of(value)
                if kind is None:
                    continue  # a null says nothing about the type; it is null in any column
                column = column_for_property(name)
                before = seen.get(column)
                if before is None:
                    seen[column] = kind
                elif before != kind:
                    seen[column] = merge_types(before, kind)
                    conflicts.setdefault(column, (before, kind))
        changed = False
        for column, (first, second) in conflicts.items():
            if column not in self.columns and column not in self.declared:
                self.changes.append(
                    {"column": column, "from": first, "to": seen[column], "seen": second, "at": where}
                )
        for column, kind in seen.items():
            current = self.columns.get(column)
            if current is None:
                self.columns[column] = kind
                changed = True
            elif column not in self.declared:
                merged = merge_types(current, kind)
                if merged != current:
                    self.columns[column] = merged
                    self.changes.append({"column": column, "from": current, "to": merged, "at": where})
                    changed = True
        return changed

    def merge(self, other: TableSchema) -> bool:
        """Fold another writer's schema of the same table into this one (both only ever widen)."""
        changed = False
        for column, kind in other.columns.items():
            current = self.columns.get(column)
            if current is None:
                self.columns[column] = kind
                changed = True
            elif current != kind and column not in self.declared:
                self.columns[column] = merge_types(current, kind)
                changed = True
        return changed

    def to_bytes(self, table: str) -> bytes:
        return orjson.dumps(
            {
                "table": table,
                "property_prefix": PROPERTY_PREFIX,
                "columns": self.columns,
                "declared": sorted(self.declared),
                "changes": self.changes[-1000:],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TableSchema:
        doc = orjson.loads(data)
        return cls(dict(doc["columns"]), frozenset(doc.get("declared", ())), list(doc.get("changes", [])))


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
    """A table schema whose property columns are fixed by an Avro record schema of the properties.

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
    columns = {column_for_property(str(f["name"])): _avro_type(f["type"]) for f in fields}
    return TableSchema(columns=columns, declared=frozenset(columns))
