"""The collector's Kafka edge: produce one request's events and await their acknowledgements.

confluent-kafka's producer (idempotent, acks=all, a few ms of linger) is shared by every request of
the process. A request's events are handed over with one ``produce`` call each (librdkafka has no
batch produce in Python) with a per-request delivery callback; callbacks run on the poll thread,
count the request's outstanding events down and resolve its future on the asyncio loop
(``call_soon_threadsafe``) once the last one is acknowledged — one loop wake-up per request, not per
event.

Admission: the events of unfinished requests (counted here: ``len(producer)`` also counts queued
error events and internal requests) plus the new request's must stay within ``max_in_flight``, else
the request is refused before anything is produced (:class:`Saturated`, a 429). The librdkafka
queue is sized well above that bound, so a ``BufferError`` half-way through a request is not
expected; if one comes, the rest of the request waits briefly for room rather than splitting it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_config import producer_config
from core.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_MS = 15_000  # librdkafka gives up on a message after this (the client sees 503)
ROOM_WAIT_S = 1.0  # longest a request already half handed over waits for queue room
_FAILURE_MEMORY_S = 30.0  # a delivery failure this recent keeps /health degraded


class Saturated(Exception):
    """Too many events in flight: the caller answers 429 with Retry-After."""


@dataclass
class Outcome:
    """What Kafka said about one request's events."""

    delivered: int
    failed: int
    error: str | None = None


class _Pending:
    """One request's outstanding events; its callback runs on whichever thread serves deliveries."""

    __slots__ = ("edge", "error", "failed", "future", "lock", "loop", "remaining", "total")

    def __init__(self, edge: DeliveryEdge, total: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.edge = edge
        self.total = self.remaining = total
        self.failed = 0
        self.error: str | None = None
        self.lock = threading.Lock()
        self.loop = loop
        self.future: asyncio.Future[Outcome] | None = loop.create_future() if loop else None

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.edge.note_failure(str(error))
        with self.lock:
            if error is not None:
                self.failed += 1
                self.error = str(error)
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.finish()

    def give_back(self, unsent: int) -> None:
        """Events that were never produced (the request gave up) no longer count as outstanding."""
        with self.lock:
            self.remaining -= unsent
            self.failed += unsent
            self.error = self.error or "producer queue full"
            done = self.remaining == 0
        if done:
            self.finish()

    def finish(self) -> None:
        self.edge.finished(self.total)
        if self.loop is not None and self.future is not None:
            outcome = Outcome(self.total - self.failed, self.failed, self.error)
            self.loop.call_soon_threadsafe(_resolve, self.future, outcome)


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():  # the waiter may have timed out
        future.set_result(outcome)


class DeliveryEdge:
    """One producer and its poll thread, for the whole collector process."""

    def __init__(self, settings: Settings, max_in_flight: int, **config: Any) -> None:
        self.max_in_flight = max_in_flight
        conf = producer_config(
            settings,
            **{
                "linger.ms": 5,
                "partitioner": "murmur2_random",  # the Java client's: same partition whoever writes
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": max(100_000, 4 * max_in_flight),
                "error_cb": self._on_client_error,
                **config,
            },
        )
        self._producer = Producer(conf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="collector-deliveries", daemon=True)
        self._last_failure: tuple[float, str] | None = None
        self._outstanding = 0  # events of requests not yet finished
        self._count_lock = threading.Lock()
        self.failed_total = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def in_flight(self) -> int:
        return self._outstanding

    def finished(self, events: int) -> None:
        with self._count_lock:
            self._outstanding -= events

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_client_error(self, error: KafkaError) -> None:
        # Client-level errors (a broker away) are retried by librdkafka; what matters to /health is
        # whether deliveries fail, which the callbacks report.
        log.warning("collector producer: %s", error.str())

    def note_failure(self, error: str) -> None:
        self.failed_total += 1
        self._last_failure = (time.monotonic(), error)

    def degraded(self) -> str | None:
        """Why deliveries are impaired now (recent failures), or None."""
        if self._last_failure and time.monotonic() - self._last_failure[0] < _FAILURE_MEMORY_S:
            return f"delivery to Kafka failed recently: {self._last_failure[1]}"
        return None

    async def send(
        self, topic: str, records: list[tuple[bytes, bytes]], wait: bool = True
    ) -> asyncio.Future[Outcome] | None:
        """Hand ``records`` (key, value) to the producer; the future resolves once all are answered.

        Raises :class:`Saturated` before producing anything when the process is at its bound.
        With ``wait=False`` (async mode) nothing is awaited and None is returned.
        """
        with self._count_lock:
            in_flight = self._outstanding
            # An idle producer takes any request, so that one bigger than the bound is not refused forever.
            if in_flight and in_flight + len(records) > self.max_in_flight:
                raise Saturated(f"{in_flight} events in flight (limit {self.max_in_flight})")
            self._outstanding += len(records)
        pending = _Pending(self, len(records), asyncio.get_running_loop() if wait else None)
        produce, callback = self._producer.produce, pending.on_delivery
        for sent, (key, value) in enumerate(records):
            try:
                produce(topic, value, key, on_delivery=callback)
            except BufferError:
                if not await self._room(produce, topic, key, value, callback):
                    pending.give_back(len(records) - sent)
                    break
        return pending.future

    async def _room(self, produce: Any, topic: str, key: bytes, value: bytes, callback: Any) -> bool:
        deadline = time.monotonic() + ROOM_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            try:
                produce(topic, value, key, on_delivery=callback)
                return True
            except BufferError:
                continue
        return False

    def close(self, timeout_s: float = 30.0) -> int:
        """Deliver what is queued (up to ``timeout_s``), stop the poll thread; returns messages left."""
        left = self._producer.flush(timeout_s)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if left:
            log.error("collector stopped with %d event(s) not acknowledged by Kafka", left)
        return left
