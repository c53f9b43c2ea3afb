"""The Iceberg lake (``lake_format=iceberg``) on the real broker and moto's S3 server.

A worker end to end (exactly once, SQL, verify), a stale writer fenced by the offsets in the
snapshot summary, and a compaction that races an append.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

import connectors.iceberg_lake as iceberg_lake
import connectors.iceberg_maintenance as maintenance
from connectors.iceberg_catalog import LakeTables
from connectors.iceberg_lake import IcebergLake
from connectors.lake_fs import LakeStore
from connectors.lake_reader import lake_columns
from connectors.local.process import free_ports
from core.envvars import with_overrides
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import RawRecord
from core.settings import Settings
from core.sim import TruthBuilder
from highway.cli.query import run_query, within_deadline
from highway.cli.query_tables import describe_table, list_tables
from highway.cli.verify import verify_once
from streams.lake import build_stage
from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    BackgroundTraffic,
    Produced,
    glue_client,
    lake_report,
    lake_state,
    produce_events,
    simulated,
    wait_for_lake,
)
from tests.integration.test_lake_chaos import team_events
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
ICEBERG = {**LAKE_SETTINGS, "lake_format": "iceberg"}
TABLE = "team_create"


def test_worker_writes_iceberg_tables_exactly_once_and_they_answer_sql_and_verify(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(**ICEBERG)
    produced = Produced()
    batches = list(simulated(settings, events=6_000, event_types=40, seed=5))
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        for batch in batches:
            produce_events(settings, batch, produced)
        report = wait_for_lake(settings, produced, timeout_s=120)
        assert worker.alive()
    assert report.ok, report
    assert report.found == produced.total
    truth = TruthBuilder(settings.lanes[0])
    for batch in batches:
        truth.add(batch)
    results = {r.name: r for r in verify_once(settings, truth.build(), settings.lanes[0], only=["lake"])}
    assert results["lake rows"].passed, results
    assert results["lake tables"].actual == len(produced.ids)
    joins = len(produced.ids["contest_join"])
    _, rows = run_query(settings, "SELECT count(*), count(DISTINCT event_id) FROM contest_join")
    assert rows == [(joins, joins)]
    _, by_hour = run_query(settings, "SELECT dt, hour, count(*) FROM contest_join GROUP BY ALL ORDER BY ALL")
    dt, hour, count = by_hour[0]
    _, pruned = run_query(
        settings, f"SELECT count(*) FROM contest_join WHERE dt = '{dt}' AND hour = '{hour}'"
    )
    assert pruned == [(count,)]
    lane = settings.lanes[0]
    columns, listed = within_deadline(settings, lambda store, _: list_tables(settings, store, lane))
    tables = {row[0]: dict(zip(columns, row, strict=True)) for row in listed}
    assert set(tables) == set(produced.ids)
    assert tables["contest_join"]["rows"] == joins
    described = within_deadline(
        settings, lambda store, track: describe_table(settings, store, track, lane, "contest_join")
    )
    assert (described["rows"], described["files"]) == (joins, tables["contest_join"]["files"])
    assert described["location"].startswith(settings.lake_uri)
    assert described["offsets"]


class NoOffsets:
    def commit(self, offsets: Any) -> None:
        pass


def committer(settings: Settings) -> IcebergCommitter:
    return IcebergCommitter(settings, IcebergLake(settings, {}), ThreadPoolExecutor(4))


def buffer(settings: Settings, offsets: Iterable[int], hours_ago: int = 0) -> PartitionBuffer:
    topic = settings.event_topic(settings.lanes[0], TABLE)
    server_ts = int(time.time() * 1000) - hours_ago * 3_600_000
    filled = PartitionBuffer(topic, 0)
    for offset in offsets:
        event = {
            "event_name": TABLE,
            "event_id": f"e{offset}",
            "server_ts": server_ts,
            "properties": {"i": offset},
        }
        filled.add(RawRecord(0, offset, server_ts, orjson.dumps(event)), 0.0)
    return filled


def table_ids(settings: Settings) -> list[str]:
    return sorted(lake_columns(settings, settings.lanes[0], ["event_id"]).column("event_id").to_pylist())


@pytest.mark.parametrize("catalog", ["none", "glue"])  # SQLite (embedded) or AWS Glue (moto)
def test_a_stale_writer_is_fenced_and_loses_nothing_of_the_new_owner(
    make_settings: MakeSettings, catalog: str
) -> None:
    settings = make_settings(**ICEBERG, lake_catalog=catalog)
    tp = (settings.event_topic(settings.lanes[0], TABLE), 0)
    stale, owner = committer(settings), committer(settings)
    stale.recover([tp])
    stale_rows = buffer(settings, range(10))  # read before it lost the partition
    owner.recover([tp])  # the new owner starts from the same (empty) head
    owner.flush([buffer(settings, range(20))], NoOffsets())
    result = stale.flush([stale_rows], NoOffsets())
    assert result.rows == 0
    assert not stale_rows.rows, "the fenced writer keeps no buffer for the partition"
    assert stale.take_fenced() == {tp: 20}
    assert stale.manifests[tp].committed_offset == 19
    owner.flush([buffer(settings, range(20, 30))], NoOffsets())
    again = buffer(settings, range(20, 25))  # still stale: the owner moved on to 30
    assert stale.flush([again], NoOffsets()).rows == 0
    assert stale.take_fenced() == {tp: 30}
    assert table_ids(settings) == sorted(f"e{i}" for i in range(30))
    assert committer(settings).recover([tp])[tp].start_offset == 30
    if catalog == "glue":  # registered where Athena, Trino and Spark look for Iceberg tables
        glue = glue_client(settings)
        database = f"{settings.lake_glue_database}_{settings.lanes[0]}"
        table = glue.get_table(DatabaseName=database, Name=TABLE)["Table"]
        assert table["Parameters"]["table_type"].upper() == "ICEBERG"


def test_compaction_racing_an_append_keeps_every_row_once(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(**ICEBERG)
    tp = (settings.event_topic(settings.lanes[0], TABLE), 0)
    writer = committer(settings)
    writer.recover([tp])
    for start in range(0, 50, 10):  # five flushes: five small files in one closed hour
        writer.flush([buffer(settings, range(start, start + 10), hours_ago=3)], NoOffsets())
    real = maintenance.write_data_files
    raced: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:  # an append lands between the compaction's read and its commit
            raced.append(writer.flush([buffer(settings, range(50, 60), hours_ago=3)], NoOffsets()).rows)
        return real(*args, **kwargs)

    monkeypatch.setattr(maintenance, "write_data_files", racing)
    report = maintenance.maintain_lane(settings, settings.lanes[0], clean=False)
    assert raced == [10]
    assert report.retries >= 1, "the compaction's first commit should have met the append"
    assert report.hours_compacted == 1
    assert report.files_before == 6
    assert report.files_after == 1
    assert table_ids(settings) == sorted(f"e{i}" for i in range(60))
    assert committer(settings).recover([tp])[tp].start_offset == 60  # offsets carried forward
    lake = IcebergLake(settings, {})
    table = lake.tables.load(settings.lanes[0], TABLE)
    assert table is not None
    assert len(list(table.scan().plan_files())) == 1


class CrashBeforeCommit(BaseException):
    """Stands for the process dying between a flush's data files and its snapshot commit."""


def test_crash_between_data_files_and_commit_leaves_invisible_orphans_that_maintenance_removes(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(**{**ICEBERG, "topic_partitions": 1, "lake_flush_rows": 40})
    produced = Produced()
    events = team_events(TABLE, 200)
    produce_events(settings, events[:100], produced)
    crashing = build_stage(settings, CollectorRegistry(), overrides={})
    real_offsets = iceberg_lake.table_offsets

    def offsets_then_crash(table: Any) -> dict[str, int]:
        if crashing.handler.stats.flushes >= 1 and threading.current_thread().name.startswith("lake-io"):
            raise CrashBeforeCommit("after the data files, before the commit")
        return real_offsets(table)

    monkeypatch.setattr(iceberg_lake, "table_offsets", offsets_then_crash)

    async def run() -> None:
        await crashing.service.start()
        await asyncio.to_thread(wait_until, lambda: crashing.handler.stats.flushes >= 1, 60, 0.1, "a flush")
        await asyncio.to_thread(produce_events, settings, events[100:], produced)
        await asyncio.to_thread(
            wait_until, lambda: crashing.service.failure is not None, 60, 0.1, "the crash"
        )
        await crashing.service.stop()

    asyncio.run(run())
    monkeypatch.setattr(iceberg_lake, "table_offsets", real_offsets)
    assert isinstance(crashing.service.failure, CrashBeforeCommit)
    committed = lake_report(settings, produced)
    assert committed.duplicates == 0
    assert committed.found < 200
    table = LakeTables(settings).load(settings.lanes[0], TABLE)
    assert table is not None
    referenced = maintenance.referenced_files(table)
    on_disk = LakeStore(settings).list_keys(f"{settings.lanes[0]}/{TABLE}/data/")
    assert len(on_disk) > len([p for p in referenced if "/data/" in p]), "the crash left no orphan"
    restarted = build_stage(with_overrides(settings, lake_flush_rows=17), CollectorRegistry(), overrides={})

    async def second_run() -> None:
        await restarted.service.start()
        try:
            await asyncio.to_thread(
                wait_until,
                lambda: restarted.handler.stats.rows >= 200 - committed.found,
                60,
                0.2,
                "the replay",
            )
        finally:
            await restarted.service.stop()

    asyncio.run(second_run())
    report = lake_report(settings, produced)
    assert report.ok, report
    assert report.found == 200
    cleaned = maintenance.maintain_lane(
        with_overrides(settings, lake_orphan_min_age_s=0.001), settings.lanes[0], compact=False
    )
    assert cleaned.orphans_removed > 0
    report = lake_report(settings, produced)
    assert report.ok, report
    assert report.found == 200


def test_type_changes_go_to_typed_siblings_and_every_row_is_kept(make_settings: MakeSettings) -> None:
    settings = make_settings(**{**ICEBERG, "topic_partitions": 1})
    name, now = "wallet_topup", int(time.time() * 1000)
    produced = Produced()
    steps: list[list[dict[str, Any]]] = [
        [{"amount": 1, "code": 7}] * 5,  # ints
        [{"amount": 2, "code": 8, "coupon": "C1"}] * 5,  # a new field
        [{"amount": 2.5, "code": 9}] * 5,  # int → float: a sibling column
        [{"amount": 3, "code": "X9"}] * 5,  # a string in an int column: a sibling column
    ]
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        for index, props in enumerate(steps):
            events = [
                {
                    "event_name": name,
                    "event_id": f"e{index * 10 + i}",
                    "user_id": "u",
                    "server_ts": now,
                    "properties": p,
                }
                for i, p in enumerate(props)
            ]
            produce_events(settings, events, produced)
            wait_for_lake(settings, produced, timeout_s=30)  # one flush per step
        assert worker.alive()
    report = lake_report(settings, produced)
    assert report.ok, report
    table = LakeTables(settings).load(settings.lanes[0], name)
    assert table is not None
    types = {f.name: str(f.field_type) for f in table.schema().fields if f.name.startswith("p_")}
    assert types == {
        "p_amount": "long",
        "p_code": "long",
        "p_coupon": "string",
        "p_amount__double": "double",
        "p_code__string": "string",
    }
    _, rows = run_query(
        settings,
        "SELECT sum(p_amount), sum(p_amount__double), count(p_code), count(p_code__string),"
        f" max(p_code__string) FROM {name}",
    )
    assert rows == [(5 * 1 + 5 * 2 + 5 * 3, 5 * 2.5, 15, 5, "X9")]


def test_two_workers_share_the_tables_exactly_once_while_one_is_killed_and_returns(
    make_settings: MakeSettings,
) -> None:
    """Two lake workers on one catalog: rebalances move partitions between them (each new owner
    recovers from the snapshot offsets, a stale commit is fenced), one dies by kill -9 and comes back."""
    settings = make_settings(**{**ICEBERG, "lake_flush_rows": 250, "lake_flush_age_s": 0.5})
    first = WorkerProcess(settings, roles="lake")
    second = WorkerProcess(with_overrides(settings, http_port=free_ports(1)[0]), roles="lake")
    try:
        with BackgroundTraffic(settings, event_types=25, batch=200, pause_s=0.1) as traffic:
            first.start()
            second.start()
            first.wait_healthy()
            second.wait_healthy()
            wait_until(
                lambda: min(lake_state(w)["rows"] for w in (first, second)) > 0, 120, 0.2, "both write"
            )
            second.kill()
            written = lake_state(first)["rows"]
            wait_until(lambda: lake_state(first)["rows"] > written + 500, 120, 0.2, "the survivor takes over")
            second.start()
            second.wait_healthy()
            wait_until(lambda: lake_state(second)["rows"] > 0, 120, 0.2, "the returning worker writes")
            produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=180)
    finally:
        first.stop()
        second.stop()
    assert report.ok, report
    assert report.found == produced.total
