"""Which columns an Iceberg write needs, when a table's column types are fixed. Pure.

An Iceberg column's type can only be promoted in the ways the spec allows (int → long, float →
double, …); ``long`` → ``double`` or anything → ``string`` are not among them. So in the Iceberg lake
a property column keeps the type it was created with, and a value that does not fit it goes to a
**typed sibling column** ``<column>__<type>`` (``p_amount`` is ``int64``; a later ``2.5`` lands in
``p_amount__double``, a later ``"X9"`` in ``p_amount__string``). Every value is kept, every file's
column types agree with the table's, and Spark, Trino and Athena read the table as it is.

"Fits" follows the type lattice of :mod:`core.lake.schema`: an integer fits a ``double`` column, and
a value fits a column when merging their types leaves the column's type unchanged. New columns get
the type of the batch (widened within it), or the type an Avro override declares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.lake.records import LakeRow
from core.lake.schema import TableSchema, column_for_property, merge_types, type_of

SIBLING_SEPARATOR = "__"


def sibling_property(name: str, kind: str) -> str:
    """The property name whose column holds ``name``'s values of type ``kind``."""
    return f"{name}{SIBLING_SEPARATOR}{kind}"


@dataclass
class ColumnPlan:
    """The schema to write with, the columns the table lacks, and the rows to write."""

    schema: TableSchema
    new_columns: dict[str, str] = field(default_factory=dict)
    rows: Sequence[LakeRow] = ()
    moved_values: int = 0


def _with_properties(row: LakeRow, properties: dict[str, Any]) -> LakeRow:
    assert row.event is not None  # only rows with properties are ever rewritten
    return row._replace(event={**row.event, "properties": properties})


def plan_columns(
    fixed: Mapping[str, str], rows: Sequence[LakeRow], override: TableSchema | None = None
) -> ColumnPlan:
    """Plan a write of ``rows`` into a table whose property columns are ``fixed`` (column → type)."""
    batch = TableSchema(dict(override.columns), override.declared) if override else TableSchema()
    batch.observe(row.properties for row in rows)
    types: dict[str, str] = dict(fixed)
    new: dict[str, str] = {}
    out: list[LakeRow] = []
    moved = 0
    for row in rows:
        properties = row.properties
        rewritten: dict[str, Any] | None = None
        for name, value in properties.items():
            kind = type_of(value)
            if kind is None:
                continue
            column = column_for_property(name)
            current = types.get(column)
            if current is None:
                current = types[column] = new[column] = batch.columns.get(column, kind)
            if merge_types(current, kind) == current:
                continue
            sibling = sibling_property(name, kind)
            sibling_column = column_for_property(sibling)
            if sibling_column not in types:
                types[sibling_column] = new[sibling_column] = kind
            if rewritten is None:
                rewritten = dict(properties)
            rewritten[sibling] = rewritten.pop(name)
            moved += 1
        out.append(row if rewritten is None else _with_properties(row, rewritten))
    declared = override.declared if override else frozenset()
    return ColumnPlan(TableSchema(types, declared), new, out, moved)
