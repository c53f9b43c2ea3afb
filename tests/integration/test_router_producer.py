"""BulkProducer on the real broker: every record acknowledged, permanent refusals handed back."""

from __future__ import annotations

import time
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
