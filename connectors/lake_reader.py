"""Read the lake whatever its format: columns of every table of a lane, one table as Arrow.

``lake_format = "parquet"`` reads the Hive-layout files (``connectors.lake_fs``);
``lake_format = "iceberg"`` scans the Iceberg tables' current snapshots (``connectors.iceberg_lake``),
so files no snapshot references (a crashed flush, a compaction's inputs) are never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from connectors.iceberg_lake import IcebergLake
from connectors.lake_fs import LakeStore
from core.lake.layout import COMMON_TABLE, is_event_table, manifest_key, table_prefix
from core.lake.manifest import Manifest
from core.lake.offsets import tp_key
from core.settings import Settings


def lake_columns(settings: Settings, lane: str, columns: Sequence[str]) -> pa.Table:
    """``columns`` of every row of every event table of ``lane`` (empty when there is none); the
    common table, which holds the same events again, is left out."""
    if settings.lake_format == "parquet":
        skip = [f"{table_prefix(lane, COMMON_TABLE)}/"]
        return LakeStore(settings).read_columns(f"{lane}/", list(columns), skip)
    lake = IcebergLake(settings, {})
    parts = [lake.read(lane, table, columns) for table in event_tables(lake, lane)]
    parts = [part for part in parts if part.num_rows]
    if not parts:
        return pa.table({name: pa.array([], pa.string()) for name in columns})
    return pa.concat_tables([part.cast(parts[0].schema) for part in parts])


def event_tables(lake: IcebergLake, lane: str) -> list[str]:
    """The lane's Iceberg tables of one event type each (all but the common table)."""
    return [name for name in lake.tables.names(lane) if is_event_table(name)]


def lake_location(settings: Settings, lane: str) -> str:
    """Where the lane's tables are, for messages."""
    if settings.lake_format == "parquet":
        return LakeStore(settings).url(lane) + "/"
    return f"{settings.lake_uri}/{lane}/ (Iceberg namespace {lane})"


def iceberg_totals(lake: IcebergLake, lane: str) -> tuple[int, int]:
    """(data files, rows) of the lane's Iceberg event tables, from their current snapshots' summaries —
    what readers see, without opening a data file."""
    files = rows = 0
    for name in event_tables(lake, lane):
        table = lake.tables.load(lane, name)
        snapshot = table.current_snapshot() if table is not None else None
        if snapshot is not None and snapshot.summary is not None:
            summary = snapshot.summary.additional_properties
            files += int(summary.get("total-data-files", 0))
            rows += int(summary.get("total-records", 0))
    return files, rows


def committed_next_offset(
    settings: Settings, lake: IcebergLake | None, lane: str, table: str, topic: str, partition: int
) -> int | None:
    """The first offset of a partition that is not in the lake yet (None: none is); ``lake`` is the
    Iceberg lake to ask, None for the parquet format (its manifest answers)."""
    if lake is None:
        raw = LakeStore(settings).get(manifest_key(lane, topic, partition))
        return Manifest.from_bytes(raw).next_offset if raw else None
    return lake.head_offsets(lane, table).get(tp_key(topic, partition))
