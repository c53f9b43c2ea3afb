"""The sessions stage without a broker: event time, unusable events, the handler's quiet-partition
clock and commits, and the statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from core.sessions.commit import SessionCommitter
from core.sessions.model import ClosedSession, SessionSpec
from core.sessions.parse import Unusable, event_time, session_event
from core.sessions.rows import sessions_table
from core.sessions.stats import in_range, session_stats
from streams.sessions import SessionsHandler, SessionsMetrics
from tests.conftest import isolated_settings
from tests.unit.test_sessions_commit import FakeTables

TOPIC = "a.events.common"


def test_event_time_is_the_client_clock_unless_it_is_missing_or_off() -> None:
    assert event_time({"client_ts": 1_000, "server_ts": 1_500}, 1_000) == 1_000
    assert event_time({"client_ts": 1_000, "server_ts": 900_000}, 1_000) == 900_000  # a skewed device
    assert event_time({"server_ts": 7}, 0) == 7
    with pytest.raises(Unusable, match="client_ts nor server_ts"):
        event_time({"client_ts": "soon"}, 0)


def test_an_event_without_a_user_is_refused_naming_the_field() -> None:
    with pytest.raises(Unusable, match=r"^user_id"):
        session_event(0, {"server_ts": 1}, 0)
    event = session_event(3, {"user_id": "u", "server_ts": 1, "session_id": "", "platform": 5}, 0)
    assert (event.session_id, event.platform, event.event_name) == (None, None, "")


class FakeMessage:
    def __init__(self, partition: int, offset: int, event: dict[str, Any]) -> None:
        self._partition, self._offset, self._value = partition, offset, orjson.dumps(event)

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    def __init__(self) -> None:
        self.read: dict[int, int] = {}
        self.high: dict[int, int] = {}
        self.committed: list[TopicPartition] = []

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.read.get(tp.partition, -1)) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, self.high.get(tp.partition, 0)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed = offsets


def handler(table: FakeTables, drained: list[bool]) -> SessionsHandler:
    settings = isolated_settings(lanes=["a"], sessions_gap_s=60, sessions_allowed_lateness_s=0)
    committer = SessionCommitter(table, SessionSpec(60_000, 0), {TOPIC: "a"})
    return SessionsHandler(
        settings,
        committer,
        orjson.loads,
        SessionsMetrics(CollectorRegistry()),
        lambda: drained[0],
        lambda: False,
    )


def test_a_quiet_caught_up_partition_closes_its_sessions_once_the_router_drained() -> None:
    table, drained = FakeTables(), [False]
    stage, consumer = handler(table, drained), FakeConsumer()
    partition = TopicPartition(TOPIC, 0)
    stage.assigned(consumer, [partition])  # type: ignore[arg-type]
    assert partition.offset < 0  # nothing committed yet: from the beginning
    events = [
        {"user_id": "u", "session_id": "s", "event_name": "x", "server_ts": 1_000 * i} for i in range(3)
    ]
    consumer.read[0] = consumer.high[0] = 3
    stage.batch(consumer, [FakeMessage(0, i, e) for i, e in enumerate(events)])  # type: ignore[arg-type,misc]
    stage.batch(consumer, [FakeMessage(0, 3, {"server_ts": 5})])  # type: ignore[arg-type,list-item]
    assert stage.unusable == 1
    # Quiet for long enough on the wall clock, but the router still has events on their way.
    since, clock = stage.last_record[(TOPIC, 0)]
    stage.last_record[(TOPIC, 0)] = (since - 3600, clock)
    stage.idle(consumer)  # type: ignore[arg-type]
    assert table.rows == []
    assert stage.committer.pending() == 0
    drained[0] = True
    stage.checked_at = stage.next_flush_at = 0.0
    stage.idle(consumer)  # type: ignore[arg-type]
    assert [(r.session_id, r.event_count) for r in table.rows] == [("s", 3)]
    assert [(tp.partition, tp.offset) for tp in consumer.committed] == [(0, 3)]  # the replay offset


def test_a_partition_still_behind_is_not_quiet() -> None:
    table = FakeTables()
    stage, consumer = handler(table, [True]), FakeConsumer()
    stage.assigned(consumer, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    consumer.read[0], consumer.high[0] = 1, 500
    stage.batch(consumer, [FakeMessage(0, 0, {"user_id": "u", "server_ts": 1})])  # type: ignore[arg-type,list-item]
    since, clock = stage.last_record[(TOPIC, 0)]
    stage.last_record[(TOPIC, 0)] = (since - 3600, clock)
    stage.idle(consumer)  # type: ignore[arg-type]
    assert table.rows == []
    assert stage.committer.sessionizers[(TOPIC, 0)].open_count() == 1


def row(platform: str, start_s: int, duration_s: int, events: int) -> ClosedSession:
    start = start_s * 1000
    return ClosedSession(
        0, f"0-{start_s}", "u", "s", start, start + duration_s * 1000, events, "a", "b", platform, "1", 0, 9
    )


def test_statistics_by_platform_over_a_time_range() -> None:
    rows = [row("ios", 10, 10, 2), row("ios", 20, 30, 4), row("web", 30, 100, 9), row("web", 4_000, 1, 1)]
    # As Iceberg reads it back: timestamps in microseconds.
    table = sessions_table("a", rows)
    table = table.set_column(
        4, "session_start", table.column("session_start").cast(pa.timestamp("us", tz="UTC"))
    )
    chosen = in_range(table, 0, int(datetime(1970, 1, 1, 0, 1, tzinfo=UTC).timestamp() * 1000))
    stats = session_stats(chosen)
    assert stats["sessions"] == 3
    assert stats["duration_s"]["median"] == 30
    assert stats["events_per_session"] == {"mean": 5.0, "median": 4.0}
    assert stats["by_platform"]["ios"]["sessions"] == 2
    assert stats["by_platform"]["web"]["duration_s"] == {"median": 100.0, "p90": 100.0}
    assert session_stats(in_range(table, 10**12, None))["sessions"] == 0
