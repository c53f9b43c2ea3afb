"""The compacted ``<lane>.metrics.concurrency`` topic: publish closed-window partials, read them all back.

Delivery: the publisher is idempotent (acks=all, enable.idempotence) and keys each partial by
``<lane>|<window start>|<partition>``; the topic is compacted, so a partial re-published after a
restart or a rebalance overwrites an equal record. The partials of one input partition all go to
one partition of the topic, so every reader sees them in the order they were closed. The view reads
every partition of the topic from the beginning in a background thread, keeps the latest record
per key and can wait until it has read everything written before the wait began (used before
restoring checkpoints).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config, producer_config
from core.errors import TransientError
from core.settings import Settings


def ensure_concurrency_topics(settings: Settings, admin: KafkaAdmin | None = None) -> None:
    """Create each lane's compacted concurrency topic (idempotent)."""
    retention_ms = max(settings.realtime_history_hours * 3600 * 1000, 24 * 3600 * 1000)
    (admin or KafkaAdmin(settings)).ensure_topics(
        [settings.concurrency_topic(lane) for lane in settings.lanes],
        config={"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)},
    )


class ConcurrencyPublisher:
    """The Kafka :class:`core.realtime.ports.PartialPublisher`: ``send`` produces, ``wait`` flushes.

    All partials of one input partition go to one partition of the topic: readers infer "this input
    partition closed window W without users in it" from a later checkpoint's ``closed_until``, which
    is only sound if they cannot see a later window's partial before an earlier one of the same input
    partition (``core.realtime.publish`` also never sends a later one before the earlier is acked).
    """

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        self._failed: list[str] = []
        self._partitions: dict[str, int] = {}

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic()} key={msg.key()!r}: {err}")

    def send(self, lane: str, key: str, record: Mapping[str, Any]) -> None:
        topic = self._settings.concurrency_topic(lane)
        partitions = self._partition_count(topic)
        self._producer.produce(
            topic,
            orjson.dumps(dict(record)),
            key.encode(),
            partition=int(record["partition"]) % partitions,
            on_delivery=self._delivered,
        )
        self._producer.poll(0)

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = self._producer.list_topics(topic, timeout=10).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise TransientError(f"concurrency topic {topic} has no partitions yet")
            count = self._partitions[topic] = len(found.partitions)
        return count

    def wait(self) -> None:
        remaining = self._producer.flush(self._timeout_s)
        if self._failed or remaining:
            failed, self._failed = self._failed, []
            raise TransientError(f"concurrency partials not delivered ({remaining} pending): {failed[:3]}")


class ConcurrencyView:
    """Latest partial per key for every lane, kept current by a background consumer thread."""

    def __init__(self, settings: Settings, keep_ms: int) -> None:
        self._settings = settings
        self._keep_ms = keep_ms
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {lane: {} for lane in settings.lanes}
        self._positions: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="concurrency-view", daemon=True)
        self._consumer = Consumer(
            confluent_config(
                settings,
                **{"group.id": f"{settings.app_id}-concurrency-view", "enable.auto.commit": False},
            )
        )
        self._topics = {settings.concurrency_topic(lane): lane for lane in settings.lanes}

    def start(self, timeout_s: float = 30.0) -> None:
        admin = KafkaAdmin(self._settings)
        deadline = time.monotonic() + timeout_s
        counts = {topic: admin.partitions(topic) for topic in self._topics}
        while not all(counts.values()):  # metadata of a topic created a moment ago may lag
            if time.monotonic() > deadline:
                raise TransientError(f"concurrency topics without partitions: {counts}")
            time.sleep(0.2)
            counts = {topic: admin.partitions(topic) for topic in self._topics}
        assignment = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic, count in counts.items()
            for partition in range(count)
        ]
        self._consumer.assign(assignment)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(1000, 0.2)
            if not messages:
                continue
            now_ms = int(time.time() * 1000)
            with self._lock:
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    topic, partition = str(msg.topic()), int(msg.partition() or 0)
                    offset = int(msg.offset() or 0)
                    lane = self._topics[topic]
                    key = (msg.key() or b"").decode()
                    value = msg.value()
                    if value is None:
                        self._records[lane].pop(key, None)
                    else:
                        self._records[lane][key] = orjson.loads(value)
                    self._positions[(topic, partition)] = offset + 1
                self._prune(now_ms)

    def _prune(self, now_ms: int) -> None:
        # Keep the newest record of each partition whatever its age: it carries the checkpoint.
        for records in self._records.values():
            newest: dict[int, int] = {}
            for record in records.values():
                p = record["partition"]
                newest[p] = max(newest.get(p, 0), record["window_start"])
            stale = [
                key
                for key, r in records.items()
                if r["window_start"] < now_ms - self._keep_ms and r["window_start"] != newest[r["partition"]]
            ]
            for key in stale:
                del records[key]

    def wait_caught_up(self, timeout_s: float = 30.0) -> None:
        """Block until every record written before this call has been read."""
        # A separate client: asking the consuming one for watermarks blocks behind its consume().
        admin = KafkaAdmin(self._settings, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                targets = {
                    (topic, partition): high
                    for topic in self._topics
                    for partition, high in admin.end_offsets(topic).items()
                }
                break
            except TransientError as exc:  # e.g. leader not elected yet on a new topic
                if time.monotonic() > deadline:
                    raise TransientError(f"concurrency topics' end offsets unavailable: {exc}") from exc
                time.sleep(0.2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(high == 0 or self._positions.get(tp, 0) >= high for tp, high in targets.items()):
                    return
            time.sleep(0.02)
        raise TransientError(f"concurrency topics not read to their end within {timeout_s}s: {targets}")

    def records(self, lane: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.get(lane, {}).values())
