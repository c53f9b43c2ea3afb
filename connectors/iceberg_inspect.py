"""What an Iceberg table of the lake holds, read from its metadata (no data file is opened).

Rows, data files and bytes are the current snapshot's summary totals (``total-records``,
``total-data-files``, ``total-files-size``); the partitions come from a scan plan of that snapshot
(its manifests), so files no snapshot references — a crashed flush's, a compaction's inputs — are
never counted, unlike a listing of the storage. A description adds the columns with their Iceberg
types and the event property each property column holds (the ``highway.schema`` table property),
and the offset map the snapshots carry (``highway.offsets``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyiceberg.table import Table

from connectors.iceberg_lake import SCHEMA_PROPERTY, table_offsets
from core.lake.schema import TableSchema


@dataclass(frozen=True)
class TableStats:
    """One table's current snapshot: totals, and its ``dt=…/hour=…`` partitions → data files."""

    name: str
    snapshot_id: int | None = None
    rows: int = 0
    files: int = 0
    bytes: int = 0
    partitions: dict[str, int] = field(default_factory=dict)

    def row(self) -> tuple[Any, ...]:
        ordered = sorted(self.partitions)
        first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
        return (self.name, self.rows, self.files, self.bytes, len(ordered), first, last)


TABLE_COLUMNS = ["table", "rows", "files", "bytes", "partitions", "first_partition", "last_partition"]


def table_stats(name: str, table: Table) -> TableStats:
    """The current snapshot's totals and partitions (an empty table has no snapshot: zeros)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return TableStats(name)
    summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
    schema, specs = table.schema(), table.specs()
    partitions: dict[str, int] = {}
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        spec = specs.get(task.file.spec_id, table.spec())
        key = spec.partition_to_path(task.file.partition, schema)
        partitions[key] = partitions.get(key, 0) + 1
    return TableStats(
        name,
        snapshot.snapshot_id,
        int(summary.get("total-records", 0)),
        int(summary.get("total-data-files", 0)),
        int(summary.get("total-files-size", 0)),
        partitions,
    )


def column_owners(table: Table) -> dict[str, str]:
    """Property column → the event property it holds, from the table's stored column decisions."""
    stored = table.properties.get(SCHEMA_PROPERTY)
    if not stored:
        return {}
    return TableSchema.from_bytes(stored.encode()).owners()


def columns(table: Table) -> list[dict[str, str]]:
    """The current schema's columns with their Iceberg types, and the property each property column holds."""
    owners = column_owners(table)
    described: list[dict[str, str]] = []
    for column in table.schema().fields:
        one = {"name": column.name, "type": str(column.field_type)}
        if column.name in owners:
            one["property"] = owners[column.name]
        described.append(one)
    return described


def describe(lane: str, name: str, table: Table) -> dict[str, Any]:
    """Summary, offsets and columns of one table, JSON-ready."""
    stats = table_stats(name, table)
    _, rows, files, size, partitions, first, last = stats.row()
    snapshot = table.current_snapshot()
    committed = (
        datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
        if snapshot is not None
        else None
    )
    return {
        "table": name,
        "lane": lane,
        "format": "iceberg",
        "location": table.location(),
        "snapshot_id": stats.snapshot_id,
        "committed_at": committed,
        "rows": rows,
        "files": files,
        "bytes": size,
        "partitions": partitions,
        "first_partition": first,
        "last_partition": last,
        "max_files_per_partition": max(stats.partitions.values(), default=0),
        "offsets": table_offsets(table),
        "columns": columns(table),
    }
