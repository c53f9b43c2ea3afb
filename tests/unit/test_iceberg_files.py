"""Iceberg data files are written with the lake's own encodings (as the parquet format's), keep
Iceberg's field ids and column statistics, and read back unchanged through pyiceberg."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from connectors.iceberg_lake import IcebergLake
from core.lake.columnar import FlushBatch
from core.lake.encode import DELTA_COLUMNS, PLAIN_COLUMNS
from core.lake.records import RawRecord
from core.settings import Settings
from tests.support import contest_join

TS = int(datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp() * 1000)
ROWS = 3_000
STEP_MS = 1_200  # an hour in all, from 12:30: half the rows in hour 12, half in hour 13


def _records() -> list[RawRecord]:
    rows = []
    for offset in range(ROWS):
        event = contest_join(offset, TS + offset * STEP_MS)
        rows.append(RawRecord(0, 10_000 + offset, TS + offset * STEP_MS, orjson.dumps(event)))
    return rows


def test_iceberg_files_have_the_lake_encodings_field_ids_and_statistics(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    lake = IcebergLake(settings, {})
    batch = FlushBatch(_records())
    rows = batch.rows
    assert lake.append("l", "a", batch, {"l.event.a/0": None}, {"l.event.a/0": 10_000 + ROWS}).files == 2
    table = lake.tables.load("l", "a")
    assert table is not None
    files = sorted((task.file for task in table.scan().plan_files()), key=lambda f: str(f.partition))
    assert [(str(f.partition[0]), str(f.partition[1]), f.record_count) for f in files] == [
        ("2026-03-01", "12", ROWS // 2),
        ("2026-03-01", "13", ROWS // 2),
    ]
    ids = {field.name: field.field_id for field in table.schema().fields}
    for data_file in files:
        footer = pq.ParquetFile(data_file.file_path.removeprefix("file://")).metadata
        arrow = footer.schema.to_arrow_schema()
        assert {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in arrow} == ids
        group = footer.row_group(0)
        encodings = {
            group.column(i).path_in_schema: set(group.column(i).encodings) for i in range(group.num_columns)
        }
        for name in PLAIN_COLUMNS:
            assert not encodings[name] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
        for name in DELTA_COLUMNS:
            assert "DELTA_BINARY_PACKED" in encodings[name]
        assert "RLE_DICTIONARY" in encodings["user_id"]
        assert data_file.lower_bounds[ids["_kafka_offset"]]
        assert data_file.upper_bounds[ids["_kafka_offset"]]
        assert data_file.value_counts[ids["event_id"]] == data_file.record_count
    back = table.scan().to_arrow().sort_by("_kafka_offset")
    assert back.column("event_id").to_pylist() == [row.event["event_id"] for row in rows if row.event]
    assert back.column("p_amount").to_pylist() == [offset % 11 for offset in range(ROWS)]
    assert back.column("server_ts").cast("int64").to_pylist() == [
        (TS + i * STEP_MS) * 1000 for i in range(ROWS)
    ]
    # The statistics prune: offsets past the first file's range plan only the other file.
    pruned = list(table.scan(row_filter=f"_kafka_offset >= {10_000 + ROWS - 10}").plan_files())
    assert len(pruned) == 1


def test_a_batch_of_one_table_hour_is_one_file_with_that_partition(tmp_path: Path) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    lake = IcebergLake(settings, {})
    batch = FlushBatch(_records()[:100])  # 2 minutes from 12:30
    assert lake.append("l", "a", batch, {"l.event.a/0": None}, {"l.event.a/0": 10_100}).files == 1
    table = lake.tables.load("l", "a")
    assert table is not None
    (task,) = table.scan().plan_files()
    assert (str(task.file.partition[0]), str(task.file.partition[1]), task.file.record_count) == (
        "2026-03-01",
        "12",
        100,
    )
    assert "/dt=2026-03-01/hour=12/" in task.file.file_path
    assert table.scan(row_filter="hour = '13'").to_arrow().num_rows == 0
    assert table.scan(row_filter="hour = '12'").to_arrow().num_rows == 100
