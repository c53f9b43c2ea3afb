"""Reading Kafka topics to their current end, for verification (confluent-kafka, batch consume).

Topics are read from the low to the high watermark taken when reading starts (``read_committed``:
aborted transactional writes are not counted; records of a transaction still open when reading
starts are waited for). :func:`topic_event_ids` keeps only an event_id
multiset per topic, so verifying millions of events does not hold the messages in memory.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.wire import codec_for
from core.errors import SchemaError, TransientError
from core.settings import Settings


@dataclass
class TopicIds:
    """What a topic holds, reduced to what the id checks need."""

    ids: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    undecodable: int = 0


def scan_topics(
    settings: Settings,
    topics: Iterable[str],
    on_batch: Callable[[list[Message]], None],
    timeout_s: float = 120.0,
    *,
    isolation: str = "read_committed",
) -> set[str]:
    """Feed every message of the existing ``topics`` up to their current end to ``on_batch``.

    Returns the topics that exist (an existing but empty topic is in it, an absent one is not).
    ``isolation="read_uncommitted"`` also feeds the records of aborted and open transactions.
    """
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"highway-verify-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": isolation,
                "fetch.max.bytes": 52_428_800,
            },
        )
    )
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        existing: set[str] = set()
        partitions: list[tuple[str, int]] = []
        for topic in dict.fromkeys(topics):
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                continue
            existing.add(topic)
            partitions.extend((topic, partition) for partition in found.partitions)
        # Read to the high watermark, not the stable offset: a transaction whose commit returned may
        # still have markers to write, and stopping at the stable offset would miss its records.
        ends: dict[tuple[str, int], int] = {}
        assignment: list[TopicPartition] = []
        for (topic, partition), (low, high) in KafkaAdmin(settings, timeout_s).watermarks(partitions).items():
            if high > low:
                assignment.append(TopicPartition(topic, partition, low))
                ends[topic, partition] = high
        if assignment:
            consumer.assign(assignment)
            _consume_to_ends(consumer, ends, on_batch, timeout_s)
        return existing
    finally:
        consumer.close()


def _consume_to_ends(
    consumer: Consumer,
    ends: dict[tuple[str, int], int],
    on_batch: Callable[[list[Message]], None],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(ends)
    while pending:
        batch = consumer.consume(num_messages=10_000, timeout=0.5)
        good: list[Message] = []
        for message in batch:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                raise TransientError(f"reading {message.topic()} [{message.partition()}]: {error}")
        if good:
            on_batch(good)
        # position() moves past transaction markers too, which are never delivered as messages.
        positions = consumer.position([TopicPartition(t, p) for t, p in pending])
        for position in positions:
            if position.offset >= pending[position.topic, position.partition]:
                del pending[position.topic, position.partition]
        if pending and time.monotonic() > deadline:
            (topic, partition), end = next(iter(pending.items()))
            raise TransientError(
                f"could not read {len(pending)} partition(s) to their end within {timeout_s:.0f}s, "
                f"e.g. {topic} [{partition}] to offset {end} (a transaction left open by a producer "
                "that died stays unreadable until the broker aborts it)"
            )


def read_topics(
    settings: Settings,
    topics: Iterable[str],
    timeout_s: float = 120.0,
    *,
    isolation: str = "read_committed",
) -> dict[str, list[Message]]:
    """Every message of the existing ``topics`` up to their current end; absent topics are omitted."""
    result: dict[str, list[Message]] = {}

    def keep(batch: list[Message]) -> None:
        for message in batch:
            result.setdefault(str(message.topic()), []).append(message)

    for topic in scan_topics(settings, topics, keep, timeout_s, isolation=isolation):
        result.setdefault(topic, [])
    return result


def count_messages(settings: Settings, topic: str) -> int | None:
    """Messages in ``topic`` now (None when the topic does not exist)."""
    seen = 0

    def count(batch: list[Message]) -> None:
        nonlocal seen
        seen += len(batch)

    return seen if scan_topics(settings, [topic], count) else None


def event_id_counts(settings: Settings, messages: Iterable[Message]) -> tuple[Counter[str], int]:
    """event_id multiset of decoded messages, and how many could not be decoded."""
    summary = TopicIds()
    _add_ids(summary, messages, codec_for(settings).decode)
    return summary.ids, summary.undecodable


def _add_ids(
    summary: TopicIds, messages: Iterable[Message], decode: Callable[[bytes], dict[str, Any]]
) -> None:
    ids = summary.ids
    for message in messages:
        summary.messages += 1
        value = message.value()
        try:
            event = decode(value) if value is not None else None
        except SchemaError:
            event = None
        event_id = event.get("event_id") if event is not None else None
        if isinstance(event_id, str):
            ids[event_id] += 1
        else:
            summary.undecodable += 1


def topic_event_ids(
    settings: Settings, topics: Iterable[str], timeout_s: float = 120.0
) -> dict[str, TopicIds]:
    """event_id multiset per existing topic (absent topics are omitted)."""
    decode = codec_for(settings).decode
    result: dict[str, TopicIds] = {}

    def reduce(batch: list[Message]) -> None:
        by_topic: defaultdict[str, list[Message]] = defaultdict(list)
        for message in batch:
            by_topic[str(message.topic())].append(message)
        for topic, messages in by_topic.items():
            _add_ids(result.setdefault(topic, TopicIds()), messages, decode)

    for topic in scan_topics(settings, topics, reduce, timeout_s):
        result.setdefault(topic, TopicIds())
    return result


class CommittedCounter:
    """Counts the records of the topics matching ``regex`` as a ``read_committed`` reader sees them,
    incrementally: each :meth:`poll` reads only what arrived since the last one."""

    def __init__(self, settings: Settings, regex: str, poll_budget_s: float = 0.5) -> None:
        self._consumer = Consumer(
            confluent_config(
                settings,
                **{
                    "group.id": f"highway-count-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "topic.metadata.refresh.interval.ms": 1000,
                    "log_level": 0,
                },
            )
        )
        self._consumer.subscribe([regex])
        self._budget_s = poll_budget_s
        self.counts: Counter[str] = Counter()
        self._next: dict[tuple[str | None, int | None], int] = {}

    def poll(self) -> Counter[str]:
        deadline = time.monotonic() + self._budget_s
        seen = self._next
        while time.monotonic() < deadline:
            batch = self._consumer.consume(num_messages=10_000, timeout=0.05)
            for message in batch:
                if message.error() is not None:
                    continue
                # A rebalance (a new topic matched the regex) starts the partitions over from the
                # beginning, since nothing is committed: count each offset once.
                topic, key, offset = (
                    str(message.topic()),
                    (message.topic(), message.partition()),
                    message.offset(),
                )
                if offset is not None and offset >= seen.get(key, 0):
                    seen[key] = offset + 1
                    self.counts[topic] += 1
            if not batch and self.counts:
                break
        return self.counts

    def close(self) -> None:
        self._consumer.close()
