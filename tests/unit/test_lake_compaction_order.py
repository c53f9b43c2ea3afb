"""Iceberg compaction on a ``file://`` lake writes one file per closed table-hour, its rows in event
time then Kafka order, every row once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from connectors.iceberg_lake import IcebergLake
from connectors.iceberg_maintenance import maintain_lane
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import RawRecord
from core.settings import Settings

HOUR_MS = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000


class Offsets:
    def commit(self, offsets: object) -> None:
        pass


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_compacted_rows_are_in_event_time_then_kafka_order(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([("l.event.a", 0), ("l.event.a", 1)])
    for flush in range(3):  # each flush holds later offsets but earlier event times than the last
        buffers = []
        for partition in (0, 1):
            buffer = PartitionBuffer("l.event.a", partition)
            for offset in range(flush * 4, flush * 4 + 4):
                ts = HOUR_MS + (2 - flush) * 60_000 + (offset % 4) * 1_000
                event = {"event_name": "a", "event_id": f"{partition}-{offset}", "server_ts": ts}
                buffer.add(RawRecord(partition, offset, ts, orjson.dumps(event)), 0.0)
            buffers.append(buffer)
        assert committer.flush(buffers, Offsets()).rows == 8
    report = maintain_lane(settings, "l", clean=False, grace_s=0.0)
    assert (report.hours_compacted, report.files_before, report.files_after) == (1, 3, 1)
    table = IcebergLake(settings, {}).tables.load("l", "a")
    assert table is not None
    [task] = list(table.scan().plan_files())
    rows = pq.read_table(task.file.file_path.removeprefix("file://")).to_pylist()
    keys = [(r["server_ts"], r["_kafka_partition"], r["_kafka_offset"]) for r in rows]
    assert keys == sorted(keys)
    assert sorted(r["event_id"] for r in rows) == sorted(f"{p}-{o}" for p in (0, 1) for o in range(12))
