"""The Iceberg lake's pure parts: offset maps, fencing, typed sibling columns, pruning, and the
commit path (``IcebergCommitter``) over an in-memory table store that fails or moves on demand."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from connectors.iceberg_catalog import catalog_path
from connectors.iceberg_lake import IcebergLake, arrow_chunks, arrow_rows
from connectors.iceberg_maintenance import maintain_lane
from connectors.lake_reader import iceberg_totals, lake_columns
from core.lake.columnar import FlushBatch
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.offsets import (
    OFFSETS_PROPERTY,
    advanced,
    decode_offsets,
    encode_offsets,
    fenced,
    latest_offsets,
)
from core.lake.ports import TableAppend
from core.lake.pruning import partition_filter
from core.lake.records import LakeRow, RawRecord, decode_records
from core.lake.schema import TableSchema
from core.settings import Settings
from highway.cli import app as cli_app
from highway.cli.query import run_query
from streams.lake_iceberg import LakeMaintenance

SETTINGS = Settings(lanes=["l"], lake_format="iceberg")
A0, A1, B0 = ("l.event.a", 0), ("l.event.a", 1), ("l.event.b", 0)


def test_offsets_round_trip_and_the_newest_map_wins() -> None:
    encoded = encode_offsets({"t/1": 5, "t/0": 7})
    assert decode_offsets({OFFSETS_PROPERTY: encoded}) == {"t/0": 7, "t/1": 5}
    assert decode_offsets({"other": "x"}) is None
    assert latest_offsets([{}, {OFFSETS_PROPERTY: encoded}, {OFFSETS_PROPERTY: "{}"}]) == {"t/0": 7, "t/1": 5}
    assert latest_offsets([]) == {}


def test_fencing_compares_only_the_partitions_written() -> None:
    head = {"t/0": 10, "t/1": 4}
    assert fenced(head, {"t/0": 10}) == []
    assert fenced(head, {"t/0": 8}) == ["t/0"]
    assert fenced(head, {"t/2": None}) == []
    assert fenced(head, {"t/1": None, "t/0": 10}) == ["t/1"]
    assert advanced(head, {"t/0": 12}) == {"t/0": 12, "t/1": 4}
    with pytest.raises(ValueError, match="cannot move back"):
        advanced(head, {"t/0": 9})


def test_a_type_change_goes_to_typed_siblings_in_the_iceberg_table(
    tmp_path: Any, pool: ThreadPoolExecutor
) -> None:
    """The table keeps each column's type (Iceberg cannot turn long into double or string): other
    values land in typed siblings, the decisions are stored with the table, and no row is lost."""
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    values: list[Any] = [1, 2.5, "x", 3, 4.0]
    for offset, value in enumerate(values):  # one flush each: every type change meets a stored table
        buffer = PartitionBuffer(*A0)
        event = {"event_id": f"e{offset}", "server_ts": 1_790_000_000_000, "properties": {"amount": value}}
        buffer.add(RawRecord(0, offset, 0, orjson.dumps(event)), 0.0)
        assert committer.flush([buffer], Offsets()).rows == 1
    table = IcebergLake(settings, {}).tables.load("l", "a")
    assert table is not None
    types = {
        field.name: str(field.field_type) for field in table.schema().fields if field.name.startswith("p_")
    }
    assert types == {"p_amount": "long", "p_amount__double": "double", "p_amount__string": "string"}
    _, rows = run_query(
        settings, "SELECT event_id, p_amount, p_amount__double, p_amount__string FROM a ORDER BY event_id"
    )
    assert rows == [
        ("e0", 1, None, None),
        ("e1", None, 2.5, None),
        ("e2", None, None, "x"),
        ("e3", 3, None, None),
        ("e4", None, 4.0, None),
    ]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT count(*) FROM t WHERE dt = '2026-01-02' AND hour = '05'",
            "dt = '2026-01-02' AND hour = '05'",
        ),
        ("SELECT * FROM t WHERE dt='2026-01-02'", "dt = '2026-01-02'"),
        ("SELECT * FROM t WHERE dt = '2026-01-02' OR x = 1", None),
        ("SELECT * FROM t WHERE NOT dt = '2026-01-02'", None),
        ("SELECT * FROM t WHERE dt = '2026-01-02' AND dt = '2026-01-03'", None),
        ("SELECT * FROM t", None),
        ("SELECT * FROM t WHERE x IN (SELECT 1) AND dt = '2026-01-02'", None),
        ("SELECT * FROM t WHERE t.x_dt = '2026-01-02'", None),
    ],
)
def test_pruning_only_for_plain_equalities(sql: str, expected: str | None) -> None:
    assert partition_filter(sql, 1) == expected
    assert partition_filter(sql, 2) is None


@dataclass
class Tables:
    """In-memory tables: rows and the offset map per table; ``fail``/``moved`` inject trouble."""

    rows: dict[tuple[str, str], list[LakeRow]] = field(default_factory=dict)
    offsets: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)

    def head_offsets(self, lane: str, table: str) -> dict[str, int]:
        return dict(self.offsets.get((lane, table), {}))

    def append(
        self,
        lane: str,
        table: str,
        batch: FlushBatch,
        expected: Mapping[str, int | None],
        written: Mapping[str, int],
    ) -> TableAppend:
        if table in self.fail:
            raise OSError(f"{table} storage away")
        head = self.head_offsets(lane, table)
        refused = fenced(head, expected)
        if refused:
            return TableAppend(fenced=tuple(refused))
        self.rows.setdefault((lane, table), []).extend(batch.rows)
        self.offsets[(lane, table)] = advanced(head, written)
        return TableAppend(files=1, bytes=1)


class Offsets:
    def __init__(self) -> None:
        self.committed: dict[tuple[str, int], int] = {}

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.committed.update(offsets)


def filled(tp: tuple[str, int], offsets: range) -> PartitionBuffer:
    buffer = PartitionBuffer(*tp)
    for offset in offsets:
        buffer.add(RawRecord(tp[1], offset, 0, orjson.dumps({"event_id": f"{tp}{offset}"})), 0.0)
    return buffer


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_flush_commits_per_table_and_recovery_resumes_from_the_map(pool: ThreadPoolExecutor) -> None:
    tables, offsets = Tables(), Offsets()
    committer = IcebergCommitter(SETTINGS, tables, pool)
    assert committer.recover([A0, A1, B0])[A0].start_offset is None
    result = committer.flush([filled(A0, range(5)), filled(A1, range(3)), filled(B0, range(2))], offsets)
    assert (result.partitions, result.rows, result.files) == (3, 10, 2)
    assert tables.offsets[("l", "a")] == {"l.event.a/0": 5, "l.event.a/1": 3}
    assert offsets.committed == {A0: 5, A1: 3, B0: 2}
    fresh = IcebergCommitter(SETTINGS, tables, pool)
    assert {tp: r.start_offset for tp, r in fresh.recover([A0, A1, B0]).items()} == {A0: 5, A1: 3, B0: 2}


def test_a_failed_table_keeps_its_buffers_and_the_others_commit(pool: ThreadPoolExecutor) -> None:
    tables = Tables(fail={"b"})
    committer = IcebergCommitter(SETTINGS, tables, pool)
    committer.recover([A0, B0])
    a, b = filled(A0, range(4)), filled(B0, range(4))
    result = committer.flush([a, b], Offsets())  # progress: counted, the failure reported unsettled
    assert (result.rows, result.unsettled) == (4, "flush")
    assert not a.rows
    assert len(b.rows) == 4
    with pytest.raises(OSError, match="storage away"):  # no progress at all: the flush fails
        committer.flush([b], Offsets())
    assert len(b.rows) == 4
    tables.fail.clear()
    assert committer.flush([b], Offsets()).rows == 4
    assert len(tables.rows[("l", "b")]) == 4


def test_a_fenced_partition_is_dropped_and_repositioned_while_its_neighbour_waits(
    pool: ThreadPoolExecutor,
) -> None:
    tables = Tables()
    stale, owner = IcebergCommitter(SETTINGS, tables, pool), IcebergCommitter(SETTINGS, tables, pool)
    stale.recover([A0, A1])
    owner.recover([A0])
    owner.flush([filled(A0, range(7))], Offsets())
    mine, neighbour = filled(A0, range(3)), filled(A1, range(3))
    assert stale.flush([mine, neighbour], Offsets()).rows == 0
    assert not mine.rows
    assert len(neighbour.rows) == 3  # not fenced: committed on the next flush
    assert stale.take_fenced() == {A0: 7}
    assert stale.take_fenced() == {}
    assert stale.manifests[A0].committed_offset == 6
    assert stale.flush([neighbour], Offsets()).rows == 3
    assert len(tables.rows[("l", "a")]) == 10
    assert tables.offsets[("l", "a")] == {"l.event.a/0": 7, "l.event.a/1": 3}


def test_a_file_lake_of_iceberg_tables_answers_sql_verify_reads_and_compacts(
    tmp_path: Any, pool: ThreadPoolExecutor
) -> None:
    """The real pyiceberg edge on a ``file://`` lake with the embedded SQLite catalog."""
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    hour_ms = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    for start in (0, 5, 10):  # three flushes, two hours: three files in the first
        buffer = PartitionBuffer(*A0)
        for offset in range(start, start + 5):
            ts = hour_ms + (3_600_000 if offset >= 12 else 0)
            event = {
                "event_name": "a",
                "event_id": f"e{offset}",
                "server_ts": ts,
                "properties": {"n": offset},
            }
            buffer.add(RawRecord(0, offset, ts, orjson.dumps(event)), 0.0)
        assert committer.flush([buffer], Offsets()).rows == 5
    _, rows = run_query(settings, "SELECT hour, count(*), sum(p_n) FROM a GROUP BY ALL ORDER BY ALL")
    assert rows == [("14", 12, sum(range(12))), ("15", 3, 12 + 13 + 14)]
    _, pruned = run_query(settings, "SELECT count(*) FROM a WHERE hour = '15'")
    assert pruned == [(3,)]
    assert sorted(lake_columns(settings, "l", ["event_id"]).column("event_id").to_pylist()) == sorted(
        f"e{i}" for i in range(15)
    )
    report = maintain_lane(settings, "l", clean=False)
    assert (report.hours_compacted, report.files_before, report.files_after) == (1, 3, 1)
    assert iceberg_totals(IcebergLake(settings, {}), "l") == (2, 15)
    assert IcebergCommitter(settings, IcebergLake(settings, {}), pool).recover([A0])[A0].start_offset == 15


def test_settings_refuse_projection_for_iceberg_and_place_the_catalog() -> None:
    with pytest.raises(ValueError, match="projection"):
        Settings(lake_catalog="projection")
    assert Settings(lake_catalog="projection", lake_format="parquet").lake_format == "parquet"
    assert catalog_path(Settings(lake_uri="file:///data/lake")) == Path("/data/lake/_iceberg_catalog.db")
    on_s3 = Settings(lake_uri="s3://b/lake", state_dir=Path("/var/hw"))
    assert catalog_path(on_s3) == Path("/var/hw/iceberg_catalog.db")
    assert catalog_path(on_s3.model_copy(update={"lake_iceberg_catalog_path": Path("/c.db")})) == Path(
        "/c.db"
    )


def test_orphan_removal_keeps_referenced_and_foreign_files(tmp_path: Any, pool: ThreadPoolExecutor) -> None:
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_orphan_min_age_s=60.0)
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    committer.flush([filled(A0, range(5))], Offsets())
    table_dir = tmp_path / "lake" / "l" / "a"
    stray = table_dir / "data" / "stray.parquet"  # a crashed flush's file
    fresh = table_dir / "data" / "in-flight.parquet"  # a commit still under way
    hive = table_dir / "dt=2020-01-01" / "hour=00" / "part-00000-00000000000000000000.parquet"
    for path in (stray, fresh, hive):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in (stray, hive):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    report = maintain_lane(settings, "l", compact=False)
    assert report.orphans_removed == 1
    assert not stray.exists()
    assert fresh.exists()
    assert hive.exists()
    assert sorted(lake_columns(settings, "l", ["event_id"]).column("event_id").to_pylist()) == sorted(
        f"{A0}{i}" for i in range(5)
    )


def test_the_lake_commands_compact_and_refuse_the_parquet_format(
    tmp_path: Any, pool: ThreadPoolExecutor
) -> None:
    lake = f"file://{tmp_path}/lake"
    settings = Settings(lake_uri=lake, lanes=["l"], lake_format="iceberg")
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    for start in (0, 3, 6):
        committer.flush([filled(A0, range(start, start + 3))], Offsets())  # server_ts 0: a closed hour
    config = tmp_path / "highway.toml"
    config.write_text(f'lanes = ["l"]\n[lake]\nuri = "{lake}"\nformat = "iceberg"\n')
    result = CliRunner().invoke(cli_app, ["--config", str(config), "lake", "maintain"])
    assert result.exit_code == 0, result.output
    assert "hours_compacted=1 files_before=3 files_after=1" in result.stdout
    config.write_text(f'lanes = ["l"]\n[lake]\nuri = "{lake}"\nformat = "parquet"\n')
    result = CliRunner().invoke(cli_app, ["--config", str(config), "lake", "compact"])
    assert result.exit_code == 2


def test_the_worker_runs_maintenance_periodically(tmp_path: Any, pool: ThreadPoolExecutor) -> None:
    settings = Settings(
        lake_uri=f"file://{tmp_path}/lake",
        lanes=["l"],
        lake_format="iceberg",
        lake_maintenance_interval_s=0.05,
    )
    committer = IcebergCommitter(settings, IcebergLake(settings, {}), pool)
    committer.recover([A0])
    for start in (0, 3):
        committer.flush([filled(A0, range(start, start + 3))], Offsets())
    service = LakeMaintenance(settings)

    async def run() -> None:
        await service.start()
        try:
            for _ in range(400):
                if service.runs:
                    return
                await asyncio.sleep(0.05)
        finally:
            await service.stop()

    asyncio.run(run())
    assert service.runs >= 1
    assert service.failures == 0
    assert service.last is not None
    assert (service.last.hours_compacted, service.last.files_after) == (1, 1)
    assert service.health() == ("ok", None)
    service.error = "OSError('S3 away')"
    assert service.health()[0] == "degraded"


def test_a_commit_on_a_stale_cached_head_is_refused_and_redone_on_the_new_head(
    tmp_path: Any, pool: ThreadPoolExecutor
) -> None:
    """A writer plans its first attempt on the head it last saw, without reading the catalog: when
    another writer committed since, the catalog refuses it, and the retry on the new head fences
    (same partition) or keeps the other writer's offsets (neighbour partition)."""
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"], lake_format="iceberg")
    stale_lake, owner_lake = IcebergLake(settings, {}), IcebergLake(settings, {})
    stale, owner = IcebergCommitter(settings, stale_lake, pool), IcebergCommitter(settings, owner_lake, pool)
    stale.recover([A0, A1])
    assert stale.flush([filled(A0, range(3)), filled(A1, range(2))], Offsets()).rows == 5
    owner.recover([A0])
    assert owner.flush([filled(A0, range(3, 6))], Offsets()).rows == 3  # stale's known head is now behind
    neighbour = filled(A1, range(2, 4))
    assert (
        stale.flush([filled(A0, range(3, 5)), neighbour], Offsets()).rows == 0
    )  # its check passed on the old head
    assert (stale_lake.retries, stale.take_fenced()) == (1, {A0: 6})
    assert len(neighbour.rows) == 2
    assert owner.flush([filled(A0, range(6, 8))], Offsets()).rows == 2
    assert stale.flush([neighbour], Offsets()).rows == 2  # refused on the old head, then committed
    assert stale_lake.retries == 2
    assert owner_lake.head_offsets("l", "a") == {"l.event.a/0": 8, "l.event.a/1": 4}
    ids = lake_columns(settings, "l", ["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted([f"{A0}{i}" for i in range(8)] + [f"{A1}{i}" for i in range(4)])


def test_a_flush_starts_with_its_biggest_table() -> None:
    @dataclass
    class Recording(Tables):
        order: list[str] = field(default_factory=list)

        def append(self, lane: str, table: str, *args: Any) -> TableAppend:
            self.order.append(table)
            return super().append(lane, table, *args)

    tables = Recording()
    with ThreadPoolExecutor(1) as one:  # runs the tables in the order they were submitted
        committer = IcebergCommitter(SETTINGS, tables, one)
        committer.recover([A0, A1, B0])
        assert committer.flush([filled(A0, range(2)), filled(B0, range(5)), filled(A1, range(2))], Offsets())
    assert tables.order == ["b", "a"]  # b: 5 rows, a: 2 + 2


def test_a_big_batch_is_encoded_in_chunks_into_the_same_table(pool: ThreadPoolExecutor) -> None:
    events = [
        {"event_id": f"e{i}", "server_ts": 1_700_000_000_000 + i, "n": i, "s": str(i)} for i in range(10)
    ]
    rows = decode_records(RawRecord(0, i, 0, orjson.dumps(event)) for i, event in enumerate(events))
    schema = TableSchema()
    schema.observe(row.properties for row in rows)
    whole = arrow_rows(SETTINGS, rows, schema)
    assert arrow_chunks(SETTINGS, rows, schema, pool, chunk_rows=3).equals(whole)
    assert arrow_chunks(SETTINGS, rows, schema, pool, chunk_rows=10).equals(whole)
    assert whole.num_rows == 10
