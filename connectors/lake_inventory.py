"""What a lane's lake tables hold, for both lake formats, read from metadata only (no data file).

Shared by ``highway query --tables``/``--describe`` and the console's event catalogue:

* Parquet: one listing of the lane gives each table's files, bytes and ``dt=…/hour=…``
  partitions (:func:`table_files`); the columns are the table's stored schema
  (``<lane>/<table>/_schema.json``) as the lake writes them, plus the ``dt``/``hour`` partition
  columns a query sees, each property column with the event property it holds.
* Iceberg: each catalog table's current snapshot (:mod:`connectors.iceberg_inspect`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_inspect import columns as iceberg_columns
from connectors.iceberg_inspect import table_stats
from connectors.lake_fs import LakeStore
from core.console.catalog import LakeTable
from core.lake.encode import arrow_schema
from core.lake.layout import schema_key
from core.lake.schema import TableSchema
from core.settings import Settings

PARTITION_COLUMNS = ({"name": "dt", "type": "string"}, {"name": "hour", "type": "string"})


@dataclass
class TableFiles:
    """The Parquet files of one table: key → size, and their ``dt=…/hour=…`` partitions."""

    name: str
    sizes: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # "dt=…/hour=…" → files

    def add(self, key: str, size: int) -> None:
        self.sizes[key] = size
        partition = "/".join(part for part in key.split("/")[2:-1] if part.startswith(("dt=", "hour=")))
        self.partitions[partition] = self.partitions.get(partition, 0) + 1

    def row(self) -> tuple[Any, ...]:
        ordered = sorted(self.partitions)
        return (self.name, len(self.sizes), sum(self.sizes.values()), len(ordered), ordered[0], ordered[-1])


def table_files(store: LakeStore, lane: str) -> dict[str, TableFiles]:
    """Every table of the lane with its Parquet files (one listing of the lane)."""
    tables: dict[str, TableFiles] = {}
    for key, size in store.sizes(f"{lane}/").items():
        parts = key.split("/")
        if len(parts) > 2 and key.endswith(".parquet") and not parts[1].startswith("_"):
            tables.setdefault(parts[1], TableFiles(parts[1])).add(key, size)
    return tables


def parquet_columns(store: LakeStore, lane: str, table: str) -> list[dict[str, str]]:
    """The columns the lake writes for ``table`` (its stored schema), then the partition columns."""
    stored = store.get(schema_key(lane, table))
    schema = TableSchema.from_bytes(stored) if stored else TableSchema()
    owners = schema.owners()
    described: list[dict[str, str]] = []
    for column in arrow_schema(schema):
        one = {"name": column.name, "type": str(column.type)}
        if column.name in owners:
            one["property"] = owners[column.name]
        described.append(one)
    return described + [dict(column) for column in PARTITION_COLUMNS]


def lake_tables(settings: Settings, store: LakeStore, lane: str) -> dict[str, LakeTable]:
    """Each table of the lane: columns, files, bytes, first and last partition (rows: Iceberg only)."""
    if settings.lake_format == "iceberg":
        return _iceberg_tables(settings, store, lane)
    found = {}
    for name, files in sorted(table_files(store, lane).items()):
        _, count, size, _, first, last = files.row()
        found[name] = LakeTable(name, parquet_columns(store, lane, name), count, size, None, first, last)
    return found


def _iceberg_tables(settings: Settings, store: LakeStore, lane: str) -> dict[str, LakeTable]:
    tables = LakeTables(settings)
    found = {}
    for name in store.retrying(f"list {lane}/", lambda: tables.names(lane)):
        table = store.retrying(f"read {lane}/{name}", _summary_of(tables, lane, name))
        if table is not None:  # dropped since the listing
            found[name] = table
    return found


def _summary_of(tables: LakeTables, lane: str, name: str) -> Callable[[], LakeTable | None]:
    def summary() -> LakeTable | None:
        table = tables.load(lane, name)
        if table is None:
            return None
        stats = table_stats(name, table)
        ordered = sorted(stats.partitions)
        first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
        return LakeTable(name, iceberg_columns(table), stats.files, stats.bytes, stats.rows, first, last)

    return summary
