"""Library producer for events: confluent-kafka, idempotent, acks=all, keyed by user_id, batched.

Delivery guarantee: at-least-once per call of :meth:`EventProducer.flush` — the idempotent producer
retries internally without duplicating; ``flush`` returns only when every message handed over so far
is acknowledged by all in-sync replicas, and raises a :class:`~core.errors.TransientError` naming
the topic and partition when any was not. Keys use the ``murmur2_random`` partitioner, the Java
client's (and aiokafka's) choice, so a user lands on the same partition number whichever client
writes a topic.

Only failures produce delivery reports (``delivery.report.only.error``): at any moment
``delivered = produced - failed - in flight``, which keeps the per-message callback off the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_config import USER_PARTITIONER, producer_config
from connectors.wire import WireCodec, codec_for
from core.errors import TransientError
from core.settings import Settings

_POLL_EVERY = 5_000


@dataclass(frozen=True)
class DeliveryFailure:
    topic: str
    partition: int
    error: str


class EventProducer:
    """Produce event dicts (encoded with the settings' wire codec) or raw bytes to Kafka."""

    def __init__(self, settings: Settings, codec: WireCodec | None = None, **config: Any) -> None:
        self.settings = settings
        self.codec = codec or codec_for(settings)
        conf = producer_config(
            settings,
            **{"partitioner": USER_PARTITIONER, "delivery.report.only.error": True, **config},
        )
        conf["on_delivery"] = self._on_delivery
        self._producer = Producer(conf)
        self.produced = 0
        self.failed = 0
        self.failures: list[DeliveryFailure] = []
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._producer)

    @property
    def delivered(self) -> int:
        return self.produced - self.failed - len(self._producer)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed += 1
            if len(self.failures) < 100:
                partition = message.partition()
                self.failures.append(
                    DeliveryFailure(str(message.topic()), -1 if partition is None else partition, str(error))
                )

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key)
                break
            except BufferError:
                # Local queue full: serve delivery reports until librdkafka has room again.
                self._producer.poll(0.05)
        self.produced += 1
        if self.produced % _POLL_EVERY == 0:
            self._producer.poll(0)

    def produce_events(self, topic: str, events: Iterable[dict[str, Any]]) -> int:
        """Encode and hand over a batch keyed by ``user_id``; returns how many were queued."""
        encode, produce = self.codec.encode, self._produce
        count = 0
        for event in events:
            produce(topic, encode(event), str(event["user_id"]).encode())
            count += 1
        self._producer.poll(0)
        return count

    def produce_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Hand over arbitrary bytes (for hostile-input tests); delivery is checked the same way."""
        self._produce(topic, value, key)

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued message; raise TransientError naming topic/partition on any failure."""
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(timeout_s)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            raise TransientError(
                f"{remaining} message(s) not acknowledged by {self.settings.kafka_bootstrap} "
                f"within {timeout_s:.0f}s"
            )
        if self.failed:
            where = ""
            if self.failures:
                first = self.failures[0]
                where = f"; first: topic {first.topic!r} partition {first.partition}: {first.error}"
            raise TransientError(f"{self.failed} of {self.produced} message(s) were not delivered{where}")

    def close(self) -> None:
        """Release the client (its threads and connections); queued messages get a short flush."""
        if not self._closed:
            self._closed = True
            self._producer.flush(5.0)
            self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
