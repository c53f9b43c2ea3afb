"""The router's wiring (``streams.routing``) on the consumer service, with a fake consumer.

The lane's commit path gets real ``ConsumerOffsets``: batches are committed through the consumer,
metrics land on the registry passed in, and a failure crashes the service while the revoke that
follows on close commits nothing more.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from core.errors import TransientError
from core.routing.classify import SourceRecord
from streams.consumer import ConsumerService
from streams.routing import LaneHandler, RouterMetrics
from tests.unit.test_routing_commit import LANE, NOW_MS, SOURCE, FakeProducer, Offsets, batch, make_path


class FakeMessage:
    def __init__(self, record: SourceRecord) -> None:
        self.record = record

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return SOURCE

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def key(self) -> bytes | None:
        return self.record.key

    def value(self) -> bytes:
        return self.record.value

    def timestamp(self) -> tuple[int, int]:
        return 1, NOW_MS


class FakeConsumer:
    """Assigns partition 0 on the first poll, serves the batches, and revokes on close."""

    def __init__(self, batches: list[list[SourceRecord]]) -> None:
        self.batches = list(batches)
        self.committed: list[Offsets] = []
        self.callbacks: dict[str, Any] = {}
        self.polls = 0
        self.closed = False
        self.served = threading.Event()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        self.polls += 1
        if self.polls == 1:
            self.callbacks["on_assign"](self, [TopicPartition(SOURCE, 0)])
        if not self.batches:
            self.served.set()
            return []
        return [FakeMessage(record) for record in self.batches.pop(0)]

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def unassign(self) -> None:
        pass

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed.append({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def close(self) -> None:
        self.closed = True
        self.served.set()
        self.callbacks["on_revoke"](self, [TopicPartition(SOURCE, 0)])


def run_service(
    producer: FakeProducer, batches: list[list[SourceRecord]]
) -> tuple[ConsumerService, FakeConsumer, CollectorRegistry, BaseException | None]:
    """Run the lane's service until the batches are served (or it failed); then stop it."""
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    path, _, _ = make_path(producer=producer)
    path.on_settled = lambda stats: metrics.observe(LANE, stats)
    consumer = FakeConsumer(batches)

    def factory(config: dict[str, Any]) -> Any:
        return consumer

    service = ConsumerService(f"router-{LANE}", {}, [SOURCE], LaneHandler(path), consumer_factory=factory)

    async def run() -> BaseException | None:
        await service.start()
        await asyncio.to_thread(consumer.served.wait, 10)
        if consumer.closed:  # by the failure: wait for the thread to end and its crash to land
            await asyncio.to_thread(service.join, 10)
            for _ in range(500):  # the thread schedules the crash on this loop
                if service.crash_reason is not None:
                    break
                await asyncio.sleep(0.01)
        reason = service.crash_reason
        await service.stop()
        return reason

    reason = asyncio.run(run())
    return service, consumer, registry, reason


def test_the_service_commits_every_batch_and_counts_on_the_registry_passed_in() -> None:
    service, consumer, registry, reason = run_service(
        FakeProducer(auto_ack=False), [batch(0, 0), batch(0, 3)]
    )
    assert service.failure is None
    assert reason is None
    assert consumer.committed == [{(SOURCE, 0): 3}, {(SOURCE, 0): 6}]  # settled at stop, in order
    assert registry.get_sample_value("highway_router_events_total", {"lane": LANE}) == 6


def test_a_failure_crashes_the_service_and_the_revoke_on_close_commits_nothing_more() -> None:
    producer = FakeProducer(undeliverable={1})
    service, consumer, _, reason = run_service(producer, [batch(0, 0), batch(0, 3), batch(0, 6)])
    assert isinstance(service.failure, TransientError)
    assert reason is service.failure
    assert consumer.committed == [{(SOURCE, 0): 3}]
    assert consumer.batches == [batch(0, 6)]  # the service stopped reading at the failure
