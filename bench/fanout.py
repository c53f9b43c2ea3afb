"""The matched fan-out passthrough: the router's output pattern done raw, its ceiling on this broker.

Raw confluent-kafka: consume the lane's all-events topic with the router's consumer configuration
and batch size, then per event two produces — the original bytes to the event's per-event topic
(with the router's ``event_name`` header) and to the lane's common topic — on a producer built by
:func:`connectors.kafka_config.router_producer_config`, so delivery-report mode, linger,
idempotence and (exactly once) the transactional id are the router's. Every
``router_commit_interval_s`` it commits like a router: exactly once, ``send_offsets_to_transaction``
+ ``commit_transaction`` + ``begin_transaction``; at least once, ``flush`` then a synchronous
offset commit. The per-event topics exist beforehand (steady state) with the router's partition
layout. The event's topic comes from a precomputed offset → topic table (no parsing): what is left
is the cost of the pattern itself. The common record is the original event, not the router's
smaller projection, so the ceiling is if anything a little low.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from connectors.kafka_config import router_producer_config
from core.envvars import with_overrides
from core.errors import TransientError
from core.settings import Settings
from streams.routing import consumer_config

_Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class FanOutResult:
    events: int
    seconds: float
    commits: int


class _FanOut:
    """One consumer, one router-configured producer, and the interval commit of either mode."""

    def __init__(self, settings: Settings, lane: str) -> None:
        self.settings = settings
        self.exactly_once = settings.router_delivery == "exactly_once"
        self.failures: list[str] = []
        conf = router_producer_config(settings, lane)
        conf["on_delivery"] = self._on_error
        self.producer = Producer(conf)
        self.consumer = Consumer(
            consumer_config(settings) | {"group.id": f"{settings.app_id}-fanout-passthrough"}
        )
        self.commits = 0
        if self.exactly_once:
            self.producer.init_transactions(30)
            self.producer.begin_transaction()

    def _on_error(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self.failures.append(str(error))

    def produce(self, topic: str, message: Message, headers: _Headers | None) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, message.value(), message.key(), timestamp=message.timestamp()[1], headers=headers
                )
                return
            except BufferError:
                self.producer.poll(0.005)

    def commit(self) -> None:
        positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
        if self.exactly_once:
            self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
            self.producer.begin_transaction()
        else:
            while self.producer.flush(1.0):
                pass
            if self.failures:
                raise TransientError(
                    f"fan-out passthrough: {len(self.failures)} failed, first {self.failures[0]}"
                )
            if positions:
                self.consumer.commit(offsets=positions, asynchronous=False)
        self.commits += 1

    def close(self) -> None:
        try:
            if self.exactly_once:
                self.producer.abort_transaction(10)  # empty after a clean end; after a failure, drops it
        except KafkaException:
            pass  # the run has already failed; its error is the one to report
        finally:
            self.consumer.close()


def matched_fanout(
    base: Settings,
    lane: str,
    layout: list[list[tuple[str, bytes]]],
    n_events: int,
    timeout_s: float = 900,
    on_start: Callable[[], None] | None = None,
) -> FanOutResult:
    """Route ``n_events`` of the lane's all-events topic as described above; timed from the first
    record consumed to the commit that covers the last one."""
    settings = with_overrides(base, router_instance_id="fanout-passthrough")
    common = settings.common_topic(lane)
    fan = _FanOut(settings, lane)
    fan.consumer.subscribe([settings.all_events_topic(lane)])
    interval = settings.router_commit_interval_s
    seen = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        next_commit = time.monotonic() + interval
        while seen < n_events:
            batch = fan.consumer.consume(settings.router_batch_size, settings.router_batch_wait_s)
            for message in batch:
                if message.error() is not None:
                    continue
                if started is None:
                    started = time.monotonic()
                    next_commit = started + interval
                    if on_start is not None:
                        on_start()
                topic, name = layout[message.partition() or 0][message.offset() or 0]
                fan.produce(topic, message, [("event_name", name)])
                fan.produce(common, message, None)
                seen += 1
            fan.producer.poll(0)
            if time.monotonic() >= next_commit:
                fan.commit()
                next_commit = time.monotonic() + interval
            if time.monotonic() > deadline:
                raise TransientError(f"fan-out passthrough: {seen} of {n_events} within {timeout_s:.0f}s")
        fan.commit()
        assert started is not None
        elapsed = time.monotonic() - started
    finally:
        fan.close()
    if fan.failures:
        raise TransientError(f"fan-out passthrough: {len(fan.failures)} failed, first: {fan.failures[0]}")
    return FanOutResult(seen, elapsed, fan.commits)
