"""The Iceberg lake (``lake_format=iceberg``) on the real broker and moto's S3 server.

A worker end to end (exactly once, SQL, verify), a stale writer fenced by the offsets in the
snapshot summary, and a compaction that races an append.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

import connectors.iceberg_maintenance as maintenance
from connectors.iceberg_lake import IcebergLake
from connectors.lake_reader import lake_columns
from core.lake.flush import PartitionBuffer
from core.lake.iceberg_commit import IcebergCommitter
from core.lake.records import decode
from core.settings import Settings
from core.sim import TruthBuilder
from highway.cli.query import run_query
from highway.cli.verify import verify_once
from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    Produced,
    glue_client,
    produce_events,
    simulated,
    wait_for_lake,
)
from tests.support import WorkerProcess

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
        filled.add(decode(0, offset, server_ts, orjson.dumps(event)), 0.0)
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
    real = maintenance._dataframe_to_data_files
    raced: list[int] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:  # an append lands between the compaction's read and its commit
            raced.append(writer.flush([buffer(settings, range(50, 60), hours_ago=3)], NoOffsets()).rows)
        return real(*args, **kwargs)

    monkeypatch.setattr(maintenance, "_dataframe_to_data_files", racing)
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
