"""BulkProducer on the real broker: every record acknowledged, permanent refusals handed back."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from connectors.kafka_admin import KafkaAdmin
from connectors.router_producer import BulkProducer
from highway.verify.topics import read_topics
from tests.conftest import MakeSettings

pytestmark = pytest.mark.integration


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_deliver_acks_everything_and_returns_refused_records(make_settings: MakeSettings) -> None:
    settings = make_settings()
    topics = [f"{settings.lanes[0]}.producer-test-{i}" for i in range(5)]
    KafkaAdmin(settings).ensure_topics(topics)
    now = int(time.time() * 1000)
    records = [
        Record(topics[i % 5], f"k{i}".encode(), f"v{i}".encode(), now, [("n", str(i).encode())])
        for i in range(20_000)
    ]
    too_large = Record(topics[0], b"big", b"x" * 5_000_000, now)
    producer = BulkProducer(settings)
    try:
        refused = producer.deliver([*records, too_large])
    finally:
        producer.close()
    assert [r.index for r in refused] == [len(records)]
    found = read_topics(settings, topics)
    values = sorted(m.value() or b"" for messages in found.values() for m in messages)
    assert values == sorted(r.value for r in records)
    header_of = {m.value(): dict(m.headers() or []) for messages in found.values() for m in messages}
    assert header_of[b"v7"] == {"n": b"7"}


def test_two_routers_racing_on_a_new_name_both_deliver(make_settings: MakeSettings) -> None:
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import orjson

    from core.routing.classify import SourceRecord
    from core.routing.commit import BatchStats, LaneCommitPath
    from core.routing.naming import event_topic_for
    from streams.routing import ensure_lane_topics

    settings = make_settings()
    lane = settings.lanes[0]
    admin = KafkaAdmin(settings)
    ensure_lane_topics(settings, admin, lane)
    now = int(time.time() * 1000)

    def event(index: int) -> bytes:
        common = {"session_id": "s", "lane": lane, "platform": "web", "app_version": "1", "device_id": "d"}
        return orjson.dumps(
            {
                "event_name": "raced_type",
                "event_id": str(uuid.uuid4()),
                "user_id": f"u{index}",
                **common,
                "client_ts": now,
                "server_ts": now,
                "properties": {},
            }
        )

    producers = [BulkProducer(settings), BulkProducer(settings)]
    routed = [0, 0]
    committed: list[dict[tuple[str, int], int]] = []

    def counter(which: int) -> Callable[[BatchStats], None]:
        def count(stats: BatchStats) -> None:
            routed[which] += stats.routed

        return count

    routers = [
        LaneCommitPath(settings, lane, KafkaAdmin(settings), producer, orjson.loads, on_settled=counter(i))
        for i, producer in enumerate(producers)
    ]

    class Offsets:
        def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
            committed.append(dict(offsets))

    def route(which: int) -> int:
        batch = [SourceRecord(None, event(which * 100 + i), which, i, now) for i in range(50)]
        routers[which].route(batch, Offsets())
        routers[which].drain(Offsets())
        return routed[which]

    try:
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(route, [0, 1])) == [50, 50]
    finally:
        for producer in producers:
            producer.close()
    topic = event_topic_for(settings, lane, "raced_type")
    assert admin.list_topics(settings.event_topic_pattern(lane)) == [topic]
    assert len(read_topics(settings, [topic])[topic]) == 100
    source = settings.all_events_topic(lane)
    assert sorted(committed, key=str) == [{(source, 0): 50}, {(source, 1): 50}]
