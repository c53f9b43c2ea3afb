"""The route bench's input and topics: simulated events held in memory, loaded into a lane on demand.

The simulator runs once per bench run; every measurement then gets the same encoded records in a
fresh lane. Records go to an explicit partition (``crc32(key) % partitions``, so one user's events
keep their order) through one idempotent producer, so partition ``p`` of a fresh topic holds
exactly the records listed for ``p``, in order, from offset 0: the matched fan-out passthrough
maps an offset to its event's topic without parsing, the way a router that knew the answer would.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from functools import cached_property

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from bench.baseline import bench_sim_config
from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config, producer_config
from connectors.wire import codec_for
from core.errors import TransientError
from core.routing.naming import event_topic_for
from core.settings import Settings
from core.sim import MatchDaySimulator


@dataclass(frozen=True)
class BenchRecord:
    partition: int
    key: bytes
    value: bytes
    event_name: str


@dataclass(frozen=True)
class BenchEvents:
    """Encoded simulator events, each with the source partition it is loaded into."""

    records: list[BenchRecord]
    partitions: int

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def event_names(self) -> list[str]:
        return sorted({record.event_name for record in self.records})

    def head(self, count: int) -> BenchEvents:
        return BenchEvents(self.records[:count], self.partitions)

    def event_topics(self, settings: Settings, lane: str) -> list[str]:
        return sorted({event_topic_for(settings, lane, name) for name in self.event_names})

    def topics_by_offset(self, settings: Settings, lane: str) -> list[list[tuple[str, bytes]]]:
        """Per source partition, per offset: the event's topic and its ``event_name`` header value."""
        resolved = {name: (event_topic_for(settings, lane, name), name.encode()) for name in self.event_names}
        layout: list[list[tuple[str, bytes]]] = [[] for _ in range(self.partitions)]
        for record in self.records:
            layout[record.partition].append(resolved[record.event_name])
        return layout


def simulate(settings: Settings, n_events: int, event_types: int, seed: int = 1) -> BenchEvents:
    """``n_events`` match-day events over ``event_types`` names (timestamps an hour in the past)."""
    config = bench_sim_config(n_events, event_types, seed, "bench")
    encode = codec_for(settings).encode
    partitions = settings.topic_partitions
    records: list[BenchRecord] = []
    for batch in MatchDaySimulator(config).batches(10_000):
        for event in batch:
            key = str(event["user_id"]).encode()
            records.append(
                BenchRecord(zlib.crc32(key) % partitions, key, encode(event), str(event["event_name"]))
            )
    return BenchEvents(records, partitions)


def load(settings: Settings, topic: str, events: BenchEvents) -> float:
    """Produce ``events`` to their partitions of ``topic``; seconds until every one is acknowledged."""
    failures: list[str] = []

    def on_error(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(
        producer_config(settings, **{"delivery.report.only.error": True, "on_delivery": on_error})
    )
    started = time.monotonic()
    produce = producer.produce
    for index, record in enumerate(events.records):
        while True:
            try:
                produce(topic, record.value, record.key, partition=record.partition)
                break
            except BufferError:
                producer.poll(0.01)
        if index % 5_000 == 0:
            producer.poll(0)
    while producer.flush(1.0):
        pass
    if failures:
        raise TransientError(f"loading {topic}: {len(failures)} records failed, first: {failures[0]}")
    return time.monotonic() - started


def create_source(settings: Settings, lane: str) -> str:
    topic = settings.all_events_topic(lane)
    KafkaAdmin(settings).ensure_topics([topic])
    return topic


def precreate_event_topics(
    settings: Settings, lane: str, events: BenchEvents, timeout_s: float = 120
) -> None:
    """The lane's per-event topics (``topic_event_partitions`` each), every partition with a leader."""
    topics = events.event_topics(settings, lane)
    KafkaAdmin(settings, timeout_s=60).ensure_topics(topics, partitions=settings.topic_event_partitions)
    wait_for_leaders(settings, topics, timeout_s)


def wait_for_leaders(settings: Settings, topics: list[str], timeout_s: float = 120) -> None:
    client = AdminClient(confluent_config(settings))
    deadline = time.monotonic() + timeout_s
    missing = list(topics)
    while time.monotonic() < deadline:
        metadata = client.list_topics(timeout=15).topics
        missing = [
            name
            for name in topics
            if name not in metadata
            or metadata[name].error is not None
            or not metadata[name].partitions
            or any(p.leader < 0 for p in metadata[name].partitions.values())
        ]
        if not missing:
            return
        time.sleep(0.2)
    raise TransientError(f"{len(missing)} topics without leaders after {timeout_s:.0f}s, e.g. {missing[0]}")


def drop_lane(settings: Settings, lane: str, timeout_s: float = 300, settle_s: float = 3.0) -> float:
    """Delete the lane's topics (and the app's internal ones) and wait until the broker lists none.

    A measurement that starts while the broker still deletes ~1,500 partitions of the previous one
    runs 2-3 times slower, so the next one waits for the deletion and a short settle pause. Returns the
    seconds waited.
    """
    admin = KafkaAdmin(settings, timeout_s=60)
    started = time.monotonic()

    def ours() -> list[str]:
        return [t for t in admin.list_topics() if t.startswith((f"{lane}.", settings.app_id))]

    topics = ours()
    if topics:
        admin.delete_topics(topics)
    deadline = started + timeout_s
    while ours():
        if time.monotonic() > deadline:
            raise TransientError(f"the broker still lists topics of lane {lane} after {timeout_s:.0f}s")
        time.sleep(0.5)
    time.sleep(settle_s)
    return time.monotonic() - started
