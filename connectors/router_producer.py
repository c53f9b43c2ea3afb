"""Bulk producing with delivery tracking: many records out, then know when Kafka acked every one.

One idempotent, acks=all confluent-kafka producer per :class:`BulkProducer`, served by its own poll
thread. :meth:`BulkProducer.send` enqueues a batch and returns a :class:`PendingDelivery` that
completes once every record has a delivery report, so a caller can enqueue the next batch while
earlier ones are in flight (records enqueued in order keep their per-partition order).
:meth:`BulkProducer.deliver` / :meth:`BulkProducer.complete` wait and re-send records whose
delivery failed for any reason but the record itself (a new attempt: a re-sent record may be a
duplicate, which at-least-once allows). Records Kafka refuses for good (too large, invalid
timestamp, …: ``REFUSED_FOR_GOOD``) are returned to the caller to dead-letter. When other failures
persist past ``attempts`` they raise ``TransientError``: the caller must not commit the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka_config import producer_config
from core.errors import TransientError
from core.settings import Settings

log = logging.getLogger(__name__)
_Headers = list[tuple[str, str | bytes | None]]


class Producible(Protocol):
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]]


@dataclass
class Refused:
    """A record Kafka will never accept, with the error it gave."""

    index: int
    error: str


class PendingDelivery:
    """Delivery state of one ``send``: complete when every record is acknowledged or failed."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.failed: list[tuple[int, str]] = []
        self.refused: list[Refused] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count == 0:
            self._done.set()

    def settle(self, index: int, err: KafkaError | None, _msg: Message | None = None) -> None:
        """Delivery report of record ``index`` (called on the poll thread)."""
        with self._lock:
            if err is not None:
                if err.code() in REFUSED_FOR_GOOD:
                    self.refused.append(Refused(index, str(err)))
                else:
                    self.failed.append((index, str(err)))
            self.remaining -= 1
            if self.remaining == 0:
                self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._done.wait(timeout_s)


class BulkProducer:
    """One idempotent acks=all producer with a poll thread; safe to use from several threads."""

    def __init__(self, settings: Settings, attempts: int = 5, backoff_s: float = 0.5, **config: object):
        self._producer = Producer(producer_config(settings, **config))
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_poller(self) -> None:
        if self._poller is None:
            with self._start_lock:
                if self._poller is None:
                    self._poller = threading.Thread(
                        target=self._poll_loop, name="bulk-producer-poll", daemon=True
                    )
                    self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(self, records: Sequence[Producible], indexes: Sequence[int] | None = None) -> PendingDelivery:
        """Enqueue ``records`` (or those at ``indexes``); the result completes when all are settled."""
        self._ensure_poller()
        chosen = range(len(records)) if indexes is None else indexes
        pending = PendingDelivery(len(chosen))
        produce, settle = self._producer.produce, pending.settle
        for index in chosen:
            record = records[index]
            while True:
                try:
                    produce(
                        record.topic,
                        record.value,
                        record.key,
                        on_delivery=partial(settle, index),
                        timestamp=record.timestamp_ms or 0,
                        headers=cast(_Headers, record.headers) or None,
                    )
                    break
                except BufferError:
                    time.sleep(0.005)  # local queue full: the poll thread drains it
                except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
                    error = exc.args[0]
                    settle(index, error if isinstance(error, KafkaError) else KafkaError(KafkaError._FAIL))
                    break
        return pending

    def wait_for_topics(self, topics: Sequence[str], timeout_s: float = 30.0) -> None:
        """Block until this producer's metadata shows every topic, each partition with a leader.

        Producing to a topic created a moment ago, before the client's metadata is settled, lets
        librdkafka rebuild the partition state of a topic it briefly saw as missing; with the
        idempotent producer that has silently lost records in our tests. Asking first costs one
        metadata round trip per batch that creates topics.
        """
        deadline = time.monotonic() + timeout_s
        waiting = set(topics)
        while waiting:
            metadata = self._producer.list_topics(timeout=max(1.0, deadline - time.monotonic()))
            for topic in list(waiting):
                found = metadata.topics.get(topic)
                if (
                    found is not None
                    and found.error is None
                    and found.partitions
                    and all(p.leader >= 0 and p.error is None for p in found.partitions.values())
                ):
                    waiting.discard(topic)
            if waiting:
                if time.monotonic() > deadline:
                    raise TransientError(f"{len(waiting)} new topics without leaders, e.g. {min(waiting)}")
                time.sleep(0.05)

    def deliver(self, records: Sequence[Producible]) -> list[Refused]:
        """Send and wait; re-send retriable failures; return records refused for good."""
        return self.complete(records, self.send(records))

    def complete(self, records: Sequence[Producible], pending: PendingDelivery) -> list[Refused]:
        """Wait for a batch already sent (``pending``), re-sending retriable failures (blocking)."""
        refused: list[Refused] = []
        for attempt in range(1, self.attempts + 1):
            pending.wait()
            refused.extend(pending.refused)
            if not pending.failed:
                return refused
            self._log_retry(records, pending, attempt)
            time.sleep(self.backoff_s * attempt)
            pending = self.send(records, [index for index, _ in pending.failed])
        pending.wait()
        return self._give_up(pending, refused)

    def _give_up(self, pending: PendingDelivery, refused: list[Refused]) -> list[Refused]:
        refused.extend(pending.refused)
        if pending.failed:
            index, error = pending.failed[0]
            raise TransientError(
                f"{len(pending.failed)} records undelivered after {self.attempts} attempts "
                f"(first: record {index}: {error})"
            )
        return refused

    @staticmethod
    def _log_retry(records: Sequence[Producible], pending: PendingDelivery, attempt: int) -> None:
        index, error = pending.failed[0]
        log.warning(
            "delivery attempt %d: %d records failed (first: %s to %s); retrying",
            attempt,
            len(pending.failed),
            error,
            records[index].topic,
        )

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout_s)


# Errors about the record itself: sending it again cannot help, so the caller dead-letters it.
# Every other error is retried, and a failure that persists stops the caller without committing:
# treating an unlisted error (say, a just-created topic's metadata not yet known to this client) as
# permanent would move a valid event to the DLQ while its projection was already delivered.
REFUSED_FOR_GOOD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.INVALID_MSG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError._INVALID_ARG,
    }
)
