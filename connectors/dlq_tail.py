"""The newest records of a lane's dead-letter topic, read by a short-lived consumer.

No consumer group is joined and nothing is committed: the consumer is assigned the last
``limit / partitions`` offsets of each partition (read_committed, as the router writes the DLQ in
its transactions) and reads until each partition's end or the deadline, whichever comes first.
"""

from __future__ import annotations

import time
from typing import cast

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from core.console.catalog import DeadLetter, dead_letter
from core.errors import TransientError
from core.settings import Settings

DLQ_TAIL_RECORDS = 500


def dlq_tail(
    settings: Settings, lane: str, limit: int = DLQ_TAIL_RECORDS, timeout_s: float = 5.0
) -> list[DeadLetter]:
    """Up to about ``limit`` of the newest dead letters of ``lane`` (fewer when the deadline passes
    first); raises :class:`TransientError` when the broker cannot say where the topic ends."""
    topic = settings.dlq_topic(lane)
    admin = KafkaAdmin(settings, timeout_s=timeout_s)
    count = admin.partitions(topic)
    if count == 0:
        return []
    marks = admin.watermarks([(topic, partition) for partition in range(count)])
    per_partition = max(1, limit // count)
    starts = {
        partition: max(low, high - per_partition)
        for (_, partition), (low, high) in marks.items()
        if high > low
    }
    if not starts:
        return []
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"{settings.app_id}-console-dlq",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                # The broker would hold each fetch up to 500 ms waiting for more data that a tail
                # of a topic never gets: answer at once.
                "fetch.wait.max.ms": 10,
                # A dead letter may hold up to 3 MiB of original bytes, of which 400 characters are
                # kept: a small prefetch queue bounds the memory one catalogue read takes.
                "queued.max.messages.kbytes": 16 * 1024,
                "fetch.max.bytes": 8 * 1024 * 1024,
            },
        )
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in starts.items()])
        return _read(consumer, set(starts), time.monotonic() + timeout_s)
    finally:
        consumer.close()


def _read(consumer: Consumer, open_partitions: set[int], deadline: float) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    while open_partitions and (left := deadline - time.monotonic()) > 0:
        for message in consumer.consume(100, min(left, 0.5)):
            error = message.error()
            partition = int(message.partition() or 0)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(partition)
                    continue
                if error.retriable() or error.code() == KafkaError._TRANSPORT:
                    continue
                raise TransientError(f"reading {message.topic()} [{partition}]: {error}")
            kind, stamp = message.timestamp()
            letters.append(
                dead_letter(
                    cast(list[tuple[str, bytes | None]] | None, message.headers()),
                    message.value(),
                    partition,
                    int(message.offset() or 0),
                    stamp if kind != TIMESTAMP_NOT_AVAILABLE else None,
                )
            )
    return letters
