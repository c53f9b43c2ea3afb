"""The lake on the real broker and moto's S3 server, through a real ``highway worker --role lake``.

Events are produced straight to per-event topics (the router is not under test here). Every test
ends by reconciling the lake's (event_name, event_id) pairs against what was produced: 0 missing,
0 duplicates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.glue import glue_table_name
from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.lake_fs import LakeStore
from connectors.lake_reader import lake_columns
from connectors.local.stack import LocalStack
from connectors.producer import EventProducer
from core.errors import TransientError
from core.lake.encode import ARROW_TYPES
from core.lake.layout import schema_key
from core.lake.reconcile import LakeReconciliation, reconcile
from core.routing.naming import topic_name_for
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig, TruthBuilder
from highway.cli.query import run_query
from highway.cli.verify import verify_once
from streams.lake_config import lake_group_id
from tests.conftest import MakeSettings
from tests.support import WorkerProcess, health, wait_until

pytestmark = pytest.mark.integration
LAKE_SETTINGS: dict[str, Any] = {
    "lake_flush_age_s": 1.0,
    "lake_flush_rows": 2_000,
    "lake_topic_rescan_s": 2.0,
    "topic_partitions": 2,
}


@dataclass
class Produced:
    """What went into the per-event topics: event name → event ids."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.ids.setdefault(event["event_name"], []).append(event["event_id"])

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


def produce_events(settings: Settings, events: list[dict[str, Any]], produced: Produced) -> None:
    lane = settings.lanes[0]
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_topic.setdefault(settings.event_topic(lane, topic_name_for(event["event_name"])), []).append(event)
    KafkaAdmin(settings).ensure_topics(by_topic)
    with EventProducer(settings) as producer:
        for topic, batch in by_topic.items():
            producer.produce_events(topic, batch)
    produced.add(events)


def simulated(settings: Settings, events: int, event_types: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    config = SimConfig(
        start_ms=int(time.time() * 1000) - 3_600_000,
        seed=seed,
        users=2_000,
        event_types=event_types,
        events=events,
        base_rate=2_000.0,
        lane=settings.lanes[0],
    )
    yield from MatchDaySimulator(config).batches(2_000)


def lake_report(settings: Settings, produced: Produced) -> LakeReconciliation:
    table = lake_columns(settings, settings.lanes[0], ["event_name", "event_id"])
    pairs = zip(table.column("event_name").to_pylist(), table.column("event_id").to_pylist(), strict=True)
    return reconcile(produced.ids, pairs)


def lake_caught_up(settings: Settings) -> bool:
    """True when the lake group's committed offsets reach the end of every per-event topic of the
    lane. The sink commits only after files and manifest are durable, so this means "all in the
    lake" — cheap to poll; the reconciliation that follows reads the files themselves."""
    admin = KafkaAdmin(settings)
    try:
        topics = admin.list_topics(settings.event_topic_pattern(settings.lanes[0]))
        ends = {(topic, p): high for topic in topics for p, high in admin.end_offsets(topic).items()}
    except TransientError:  # a topic the router created a moment ago: not served yet, ask again
        return False
    consumer = Consumer(confluent_config(settings, **{"group.id": lake_group_id(settings)}))
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
    finally:
        consumer.close()
    return all(
        tp.offset >= ends[(tp.topic, tp.partition)] for tp in committed if ends[(tp.topic, tp.partition)]
    )


def wait_for_lake(settings: Settings, produced: Produced, timeout_s: float = 90.0) -> LakeReconciliation:
    wait_until(lambda: lake_caught_up(settings), timeout_s, 0.5, f"{produced.total} events in the lake")
    return lake_report(settings, produced)


def lake_state(worker: WorkerProcess) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{worker.base_url}/lake", timeout=5).json()
    return state


class BackgroundTraffic:
    """Produce simulator batches continuously, paced, until stopped (or the simulation ends)."""

    def __init__(self, settings: Settings, event_types: int, batch: int = 300, pause_s: float = 0.2) -> None:
        self.settings = settings
        self.produced = Produced()
        config = SimConfig(
            start_ms=int(time.time() * 1000) - 3_600_000,
            seed=7,
            users=2_000,
            event_types=event_types,
            events=2_000_000,
            base_rate=2_000.0,
            lane=settings.lanes[0],
        )
        self._batches = MatchDaySimulator(config).batches(batch)
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for batch in self._batches:
                produce_events(self.settings, batch, self.produced)
                if self._stop.wait(self._pause_s):
                    return
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Produced:
        """Stop producing; return everything that was produced (and acknowledged)."""
        self._stop.set()
        self._thread.join(120)
        assert self.error is None, self.error
        return self.produced


def test_simulated_traffic_over_200_types_lands_exactly_once_and_is_catalogued(
    make_settings: MakeSettings,
) -> None:
    # The Hive-layout format, registered in Glue as Parquet tables (Iceberg: test_lake_iceberg.py).
    settings = make_settings(
        **{**LAKE_SETTINGS, "topic_partitions": 1, "lake_catalog": "glue", "lake_format": "parquet"}
    )
    produced = Produced()
    batches = list(simulated(settings, events=12_000, event_types=220, seed=11))
    produce_events(settings, batches[0], produced)
    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        for batch in batches[1:]:
            produce_events(settings, batch, produced)
        assert len(produced.ids) >= 200
        report = wait_for_lake(settings, produced, timeout_s=120)
        assert report.ok, report
        assert report.found == produced.total
        # `highway verify`'s lake check agrees: every type's rows and ids equal the truth.
        truth = TruthBuilder(settings.lanes[0])
        for batch in batches:
            truth.add(batch)
        results = {r.name: r for r in verify_once(settings, truth.build(), settings.lanes[0], only=["lake"])}
        assert results["lake rows"].passed, results
        assert (results["lake rows"].missing, results["lake rows"].duplicates) == (0, 0)
        assert results["lake tables"].actual == len(produced.ids)
        # ... and the same rows answer SQL.
        _, rows = run_query(settings, "SELECT count(*), count(DISTINCT event_id) FROM contest_join")
        assert rows == [(len(produced.ids["contest_join"]), len(produced.ids["contest_join"]))]
        # A topic created while the worker runs is picked up without a restart.
        late_name = "late_arrival_event"
        late = [{**batches[0][0], "event_name": late_name, "event_id": "late-1", "properties": {"n": 1}}]
        started = time.monotonic()
        produce_events(settings, late, produced)
        report = wait_for_lake(settings, produced, timeout_s=30)
        assert report.ok, report
        assert time.monotonic() - started < 30
        assert lake_state(worker)["alive"]
    glue = glue_client(settings)
    tables = glue.get_paginator("get_tables").paginate(DatabaseName=settings.lake_glue_database)
    names = {t["Name"] for page in tables for t in page["TableList"]}
    lane = settings.lanes[0]
    assert {glue_table_name(lane, topic_name_for(name)) for name in produced.ids} <= names
    one = glue_table_name(lane, late_name)
    table = glue.get_table(DatabaseName=settings.lake_glue_database, Name=one)["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dt", "hour"]
    assert "ParquetHiveSerDe" in table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    assert glue.get_partitions(DatabaseName=settings.lake_glue_database, TableName=one)["Partitions"]


def glue_client(settings: Settings) -> Any:
    return boto3.client(
        "glue",
        endpoint_url=settings.aws_s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_schema_evolution_keeps_every_row(make_settings: MakeSettings) -> None:
    settings = make_settings(
        **{**LAKE_SETTINGS, "topic_partitions": 1, "lake_catalog": "projection", "lake_format": "parquet"}
    )
    name, now = "wallet_topup", int(time.time() * 1000)
    produced = Produced()

    def events(start: int, props: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "event_name": name,
                "event_id": f"e{start + i}",
                "user_id": "u",
                "server_ts": now,
                "properties": p,
            }
            for i, p in enumerate(props)
        ]

    with WorkerProcess(settings, roles="lake") as worker:
        worker.wait_healthy()
        steps: list[list[dict[str, Any]]] = [
            [{"amount": 1, "code": 7}] * 5,  # ints
            [{"amount": 2, "code": 8, "coupon": "C1"}] * 5,  # a new field
            [{"amount": 2.5, "code": 9}] * 5,  # int → float
            [{"amount": 3, "code": "X9"}] * 5,  # a string in an int column
        ]
        for index, props in enumerate(steps):
            produce_events(settings, events(index * 10, props), produced)
            wait_for_lake(settings, produced, timeout_s=30)  # one flush per step
        assert worker.alive()
    report = lake_report(settings, produced)
    assert report.ok, report
    assert report.found == 20
    store = LakeStore(settings)
    stored = orjson.loads(store.get(schema_key(settings.lanes[0], name)) or b"{}")
    expected = {
        "p_amount": "int64",
        "p_code": "int64",
        "p_coupon": "string",
        "p_amount__double": "double",
        "p_code__string": "string",
    }
    assert stored["columns"] == expected
    assert {(c["column"], c["sibling_of"]) for c in stored["changes"]} == {
        ("p_amount__double", "p_amount"),
        ("p_code__string", "p_code"),
    }
    # No file holds a column whose physical type differs from the table's (Spark, Athena).
    for key in store.list_keys(f"{settings.lanes[0]}/{name}/"):
        if key.endswith(".parquet"):
            physical = pq.read_schema(pa.BufferReader(store.get(key) or b""))
            for column, kind in expected.items():
                if column in physical.names:
                    assert physical.field(column).type == ARROW_TYPES[kind], (key, column)
    table = store.table_dataset(settings.lanes[0], name).to_table()
    assert table.num_rows == 20
    # Partition projection: the table is registered with its columns, partitions are not.
    glue = glue_client(settings)
    glue_table = glue.get_table(
        DatabaseName=settings.lake_glue_database, Name=glue_table_name(settings.lanes[0], name)
    )["Table"]
    assert glue_table["Parameters"]["projection.enabled"] == "true"
    assert {"Name": "p_code", "Type": "bigint"} in glue_table["StorageDescriptor"]["Columns"]
    assert {"Name": "p_code__string", "Type": "string"} in glue_table["StorageDescriptor"]["Columns"]
    assert {"Name": "p_amount__double", "Type": "double"} in glue_table["StorageDescriptor"]["Columns"]

    def merged(column: str) -> list[Any]:  # a column and its siblings, as a reader coalesces them
        siblings = [n for n in table.column_names if n == column or n.startswith(column + "__")]
        return [
            next((v for v in values if v is not None), None)
            for values in zip(*(table.column(n).to_pylist() for n in siblings), strict=True)
        ]

    assert sorted(merged("p_amount")) == [1] * 5 + [2] * 5 + [2.5] * 5 + [3] * 5
    assert sorted(set(map(str, merged("p_code")))) == ["7", "8", "9", "X9"]
    assert set(table.column("dt").to_pylist()) == {
        datetime.fromtimestamp(now / 1000, tz=UTC).strftime("%Y-%m-%d")
    }


@pytest.mark.parametrize("lake_format", ["parquet", "iceberg"])
def test_s3_outage_mid_stream_loses_and_duplicates_nothing(
    make_settings: MakeSettings, local_stack: LocalStack, lake_format: str
) -> None:
    if not local_stack.s3.restartable:
        pytest.fail(
            "the S3 outage test needs the local S3 server (HIGHWAY_AWS_S3_ENDPOINT_URL points elsewhere)"
        )
    settings = make_settings(**LAKE_SETTINGS, lake_format=lake_format)
    outage_s = 30.0  # the full 30 s of the acceptance criterion, also in CI mode
    with WorkerProcess(settings, roles="lake") as worker, BackgroundTraffic(settings, 20) as traffic:
        worker.wait_healthy()
        wait_until(lambda: lake_state(worker)["rows"] > 0, 60, 0.5, "a first flush")
        local_stack.s3.stop()
        try:
            down_until = time.monotonic() + outage_s
            # A transient fault that lasts is reported (after 15 s), not a silent retry loop.
            wait_until(
                lambda: (
                    "transient" in (health(worker)[1].get("stages", {}).get("lake", {}).get("reason") or "")
                ),
                outage_s,
                0.5,
                "/health degraded by the outage",
            )
            wait_until(lambda: time.monotonic() >= down_until, outage_s + 5, 0.5, "the outage to last")
            state = lake_state(worker)  # the worker answers while S3 is away
            assert state["alive"], "the lake sink died during the outage"
            # The parquet store retries inside a flush; an Iceberg flush fails and is retried whole.
            assert state["s3_retries"] + state["errors"] > 0, "the outage was not felt"
            rows_at_recovery = state["rows"]
        finally:
            local_stack.s3.start()
        wait_until(lambda: lake_state(worker)["rows"] > rows_at_recovery, 60, 0.5, "flushes after the outage")
        produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=120)
        assert worker.alive()
        assert lake_state(worker)["alive"]
    assert report.ok, report
    assert report.found == produced.total
