"""Two lake workers evolving one table's schema at the same time, on the real broker and moto's S3
server, in both lake formats: every row lands exactly once and every value keeps a column.

Each worker owns one partition of one per-event topic. Rounds of events are produced to both
partitions at once; in each round a property changes type from event to event and a new property
appears with mixed types, so both workers create columns for the same properties in the same
flush window. Parquet settles ``_schema.json`` with a compare-and-swap before writing data files —
and, so that the conflict is certain rather than likely, each worker's first schema write waits
(a ``sitecustomize`` hook) until the other has reached its own: both decided the table's first
columns from nothing, one write is refused and must merge. Iceberg commits schema changes with
its own compare-and-swap (pyiceberg's requirements on the table's current schema).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.iceberg_lake import SCHEMA_PROPERTY, IcebergLake
from connectors.kafka_admin import KafkaAdmin
from connectors.lake_fs import LakeStore
from connectors.local.process import free_ports
from core.envvars import with_overrides
from core.lake.encode import arrow_schema
from core.lake.layout import schema_key, table_prefix
from core.lake.schema import TableSchema
from core.routing.naming import topic_name_for
from core.settings import Settings
from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    Produced,
    lake_caught_up,
    lake_report,
    lake_state,
    produce_events,
)
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
EVENT = "shape_drift"
ROUNDS, PER_ROUND = 6, 200
# Loaded by the workers' interpreters (PYTHONPATH): the first write of a table schema in each
# process waits, up to 20 s, until both processes are at theirs.
RENDEZVOUS = """
import os, time
from pathlib import Path

if "LAKE_SCHEMA_RACE_DIR" in os.environ:
    from connectors import lake_fs

    meeting = Path(os.environ["LAKE_SCHEMA_RACE_DIR"])
    put, put_if = lake_fs.LakeStore.put, lake_fs.LakeStore.put_if
    waited = []

    def meet(key):
        if key.endswith("_schema.json") and not waited:
            waited.append(key)
            (meeting / str(os.getpid())).touch()
            deadline = time.monotonic() + 20
            while len(list(meeting.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)

    def meeting_put(self, key, data):
        meet(key)
        return put(self, key, data)

    def meeting_put_if(self, key, data, tag):
        meet(key)
        return put_if(self, key, data, tag)

    lake_fs.LakeStore.put, lake_fs.LakeStore.put_if = meeting_put, meeting_put_if
"""
MERGED = "schema changed by another writer meanwhile; merged"


def rendezvous(tmp_path: Path) -> dict[str, str]:
    """The environment that makes the workers' first schema writes meet."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(RENDEZVOUS)
    (tmp_path / "meeting").mkdir()
    return {"PYTHONPATH": str(tmp_path / "hook"), "LAKE_SCHEMA_RACE_DIR": str(tmp_path / "meeting")}


def drifting(round_: int, rng: random.Random) -> list[dict[str, Any]]:
    """One round: ``amount`` of a random type per event, ``new_<round>`` new and of mixed types,
    ``i`` stable; many users, so both partitions get a share."""
    now = int(time.time() * 1000)
    kinds = [lambda: rng.randint(0, 10**6), lambda: rng.random() * 100, lambda: f"s{rng.randint(0, 99)}"]
    kinds += [lambda: rng.random() < 0.5, lambda: {"nested": rng.randint(0, 9)}]
    events = []
    for index in range(PER_ROUND):
        properties: dict[str, Any] = {"i": index, "amount": rng.choice(kinds)()}
        properties[f"new_{round_}"] = rng.choice(kinds[:3])()
        events.append(
            {
                "event_name": EVENT,
                "event_id": f"r{round_}-{index}",
                "user_id": f"u{rng.randint(0, 10**9)}",
                "server_ts": now,
                "properties": properties,
            }
        )
    return events


def stored_schema(settings: Settings) -> TableSchema:
    lane = settings.lanes[0]
    if settings.lake_format == "parquet":
        stored = LakeStore(settings).get(schema_key(lane, EVENT))
        assert stored is not None
        return TableSchema.from_bytes(stored)
    table = IcebergLake(settings, {}).tables.load(lane, EVENT)
    assert table is not None
    return TableSchema.from_bytes(table.properties[SCHEMA_PROPERTY].encode())


def lake_rows(settings: Settings, schema: TableSchema) -> pa.Table:
    """The table's rows in its columns; for Parquet, checking that every file's property columns
    have the table's physical types (the dataset read would cast them)."""
    lane, columns = settings.lanes[0], ["event_id", *schema.columns]
    if settings.lake_format == "iceberg":
        return IcebergLake(settings, {}).read(lane, EVENT, columns)
    store = LakeStore(settings)
    types = arrow_schema(schema)
    for key in store.list_keys(f"{table_prefix(lane, EVENT)}/"):
        if key.endswith(".parquet"):
            with store.fs.open_input_file(store.path(key)) as file:
                for field in pq.read_schema(file):
                    if field.name.startswith("p_"):
                        assert field.type == types.field(field.name).type, (key, field.name)
    return store.table_dataset(lane, EVENT).to_table(columns=columns)


@pytest.mark.parametrize("lake_format", ["parquet", "iceberg"])
def test_two_workers_evolving_one_tables_schema_keep_every_column_and_row(
    make_settings: MakeSettings, tmp_path: Path, lake_format: str
) -> None:
    settings = make_settings(**{**LAKE_SETTINGS, "lake_format": lake_format, "lake_flush_age_s": 0.5})
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics([settings.event_topic(lane, topic_name_for(EVENT))])
    hook = rendezvous(tmp_path) if lake_format == "parquet" else {}
    workers = [
        WorkerProcess(settings, roles="lake", extra_env=hook),
        WorkerProcess(with_overrides(settings, http_port=free_ports(1)[0]), roles="lake", extra_env=hook),
    ]
    rng = random.Random(5)
    produced, sent = Produced(), []
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_healthy()
        wait_until(
            lambda: all(lake_state(w)["assigned"] == 1 for w in workers), 60, 0.3, "one partition each"
        )
        for round_ in range(ROUNDS):
            events = drifting(round_, rng)
            produce_events(settings, events, produced)
            sent += events
            wait_until(lambda: lake_caught_up(settings), 60, 0.3, f"round {round_} in the lake")
        assert all(lake_state(w)["rows"] > 0 for w in workers), "both workers must have written"
        assert all(w.alive() for w in workers)
    finally:
        for worker in workers:
            worker.stop()
    report = lake_report(settings, produced)
    assert report.ok, report
    assert report.found == produced.total == ROUNDS * PER_ROUND
    schema = stored_schema(settings)
    names = {name for event in sent for name in event["properties"]}
    assert names <= set(schema.properties), names - set(schema.properties)
    rows = {row["event_id"]: row for row in lake_rows(settings, schema).to_pylist()}
    assert len(rows) == len(sent)
    for event in sent:
        row = rows[event["event_id"]]
        for name, value in event["properties"].items():
            held = [row[column] for column in schema.properties[name].values() if row[column] is not None]
            assert len(held) == 1, (event, name, value, held)
    if lake_format == "parquet":
        assert len(list((tmp_path / "meeting").iterdir())) == 2, "both workers wrote the schema"
        logs = [
            (w.log_dir / f"worker-{w.settings.http_port}-1.log").read_text(errors="replace") for w in workers
        ]
        assert any(MERGED in log for log in logs), "the later first schema write was refused and merged"
