"""The compacted ``<lane>.metrics.concurrency`` topic: publish closed-window partials, read them all back.

Delivery: the publisher is idempotent (acks=all, enable.idempotence) and keys each partial by
``<lane>|<window start>|<partition>``; the topic is compacted, so a partial re-published after a
restart or a rebalance overwrites an equal record. The partials of one input partition all go to
one partition of the topic, so every reader sees them in the order they were closed. The view reads
every partition of the topic from the beginning in a background thread, keeps the latest record
per key and can wait until it has read everything written before the wait began (used before
restoring checkpoints).

Also here: :func:`read_offsets`, the bounded re-read of one input partition used by recovery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
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
    """Produces partials; call :meth:`flush` before giving up partitions."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        self._failed: list[str] = []
        self._partitions: dict[str, int] = {}

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic()} key={msg.key()!r}: {err}")

    def publish(self, lane: str, keyed_records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Produce partials; all partials of one input partition go to one partition, in order.

        Readers infer "this input partition closed window W without users in it" from a later
        checkpoint's ``closed_until``; that is only sound if they cannot see a later window's
        partial before an earlier one of the same input partition, hence the explicit partition.
        """
        topic = self._settings.concurrency_topic(lane)
        partitions = self._partition_count(topic)
        for key, record in keyed_records:
            self._producer.produce(
                topic,
                orjson.dumps(record),
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

    def flush(self, timeout_s: float = 10.0) -> None:
        remaining = self._producer.flush(timeout_s)
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


def read_offsets(
    settings: Settings, topic: str, partition: int, start: int, end: int, batch: int = 5000
) -> Iterator[list[Message]]:
    """Messages of one partition with ``start <= offset < end``, in batches (a fresh assigned consumer)."""
    if end <= start:
        return
    consumer = Consumer(
        confluent_config(
            settings, **{"group.id": f"{settings.app_id}-realtime-replay", "enable.auto.commit": False}
        )
    )
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        idle_deadline = time.monotonic() + 30.0
        while position < end:
            messages = [m for m in consumer.consume(batch, 0.5) if m.error() is None]
            if not messages:
                # Control records (transaction markers) are skipped without a message.
                position = max(position, consumer.position([TopicPartition(topic, partition)])[0].offset or 0)
                if time.monotonic() > idle_deadline:
                    raise TransientError(f"replay of {topic}[{partition}] stalled at {position} < {end}")
                continue
            idle_deadline = time.monotonic() + 30.0
            wanted = [m for m in messages if (m.offset() or 0) < end]
            position = (messages[-1].offset() or 0) + 1
            if wanted:
                yield wanted
    finally:
        consumer.close()
