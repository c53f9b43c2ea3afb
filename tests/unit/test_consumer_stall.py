"""A stage's consumer that is given nothing while records wait is restarted; one that is idle, or
whose broker is away, is not."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.consumer import BatchHandler, ConsumerService
from streams.consumer_stall import CHECK_EVERY_S, StallWatch, UnassignedWatch, stalled
from tests.support import wait_until

AWAY = KafkaException(KafkaError(KafkaError._TRANSPORT, "broker away"))


class StuckConsumer:
    """Assigned two partitions whose positions and watermarks are given; consume() returns nothing."""

    def __init__(
        self,
        positions: dict[int, int],
        watermarks: dict[int, tuple[int, int]] | Exception,
        committed: dict[int, int] | Exception | None = None,
    ) -> None:
        self.positions, self.watermarks, self.committed_offsets = positions, watermarks, committed
        self.callbacks: dict[str, Any] = {}
        self.closed = False
        self.polled = False
        self.lose_assignment = False

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", partition) for partition in self.positions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("t", tp.partition, self.positions[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        assert not cached, "a stall is judged on what the broker says now"
        if isinstance(self.watermarks, Exception):
            raise self.watermarks
        return self.watermarks[tp.partition]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if isinstance(self.committed_offsets, Exception):
            raise self.committed_offsets
        offsets = self.committed_offsets or {}
        return [TopicPartition("t", tp.partition, offsets.get(tp.partition, -1001)) for tp in partitions]

    # --- what the consumer service calls --------------------------------------------------------
    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num: int, timeout: float) -> list[Any]:
        if not self.polled:
            self.polled = True
            self.callbacks["on_assign"](self, self.assignment())
            if self.lose_assignment:  # a session timeout with the broker away: never given back
                self.callbacks["on_lost"](self, self.assignment())
                self.positions = {}
        time.sleep(timeout)
        return []

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def unassign(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_the_watch_counts_only_waiting_and_looks_again_every_check_interval() -> None:
    watch = StallWatch(stall_s=30)
    assert not any(watch.waited(1.0) for _ in range(29))
    assert watch.waited(1.0)  # 30 s starved
    assert not watch.waited(CHECK_EVERY_S - 1)
    assert watch.waited(1.0)
    watch.delivered()
    assert watch.starved_s == 0
    assert not watch.waited(29)


def test_records_waiting_past_the_position_are_a_stall() -> None:
    consumer = StuckConsumer({0: 10, 1: 7}, {0: (0, 15), 1: (0, 7)})
    stall = stalled(consumer, 120)  # type: ignore[arg-type]
    assert stall is not None
    assert "while 5 wait in 2 assigned partition(s)" in str(stall)


def test_caught_up_or_broker_away_is_not_a_stall() -> None:
    assert stalled(StuckConsumer({0: 15, 1: 7}, {0: (0, 15), 1: (0, 7)}), 120) is None  # type: ignore[arg-type]
    assert stalled(StuckConsumer({0: 10}, AWAY), 120) is None  # type: ignore[arg-type]
    assert stalled(StuckConsumer({}, {}), 120) is None  # type: ignore[arg-type]


def test_no_start_position_is_judged_by_the_committed_offset() -> None:
    caught_up = StuckConsumer({0: -1001}, {0: (0, 20)}, committed={0: 20})
    assert stalled(caught_up, 120) is None  # type: ignore[arg-type]
    behind = StuckConsumer({0: -1001}, {0: (5, 20)}, committed={})  # nothing committed: from low
    assert "while 15 wait" in str(stalled(behind, 120))  # type: ignore[arg-type]
    unreadable = StuckConsumer({0: -1001}, {0: (0, 20)}, committed=AWAY)
    assert "no start position" in str(stalled(unreadable, 120))  # type: ignore[arg-type]


class Idle(BatchHandler):
    def __init__(self) -> None:
        self.lost_calls = 0

    def lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.lost_calls += 1


def _run(consumers: list[StuckConsumer], make: Any, restart: bool) -> ConsumerService:
    def factory(config: dict[str, Any]) -> Any:
        consumers.append(make())
        return consumers[-1]

    return ConsumerService(
        "stalling",
        {"group.id": "g"},
        ["t"],
        Idle(),
        batch_wait_s=0.01,
        consumer_factory=factory,
        restart_on_failure=restart,
        restart_backoff_s=(0.01, 0.01),
        stall_s=0.2,
    )


def test_a_starved_consumer_with_records_waiting_is_replaced() -> None:
    consumers: list[StuckConsumer] = []
    service = _run(consumers, lambda: StuckConsumer({0: 10}, {0: (0, 15)}), restart=True)
    thread = threading.Thread(target=service._run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(consumers) >= 2, 10, 0.01, "a second consumer")
        assert consumers[0].closed
        assert "while 5 wait" in str(service.failure)
        assert isinstance(service.handler, Idle)
        assert service.handler.lost_calls >= 1
    finally:
        service._stop_requested.set()
        thread.join(5)


def test_an_idle_consumer_is_left_alone() -> None:
    consumers: list[StuckConsumer] = []
    service = _run(consumers, lambda: StuckConsumer({0: 15}, {0: (0, 15)}), restart=True)
    thread = threading.Thread(target=service._run, daemon=True)
    thread.start()
    threading.Event().wait(0.6)  # three stall periods of polling: a window for a wrong restart
    service._stop_requested.set()
    thread.join(5)
    assert len(consumers) == 1
    assert service.failure is None


def test_a_consumer_left_without_partitions_is_replaced_less_often_each_time() -> None:
    watch = UnassignedWatch(120)
    watch.unassigned(0)
    assert watch.overdue(119) is None
    first = watch.overdue(121)
    assert first is not None
    assert "no partition assigned for 121s" in str(first)
    watch.unassigned(200)  # the new consumer: not assigned either (an idle member of a big group)
    assert watch.overdue(200 + 239) is None
    assert watch.overdue(200 + 241) is not None
    watch.assigned()
    watch.unassigned(1000)
    assert watch.overdue(1121) is not None  # an assignment resets the limit


def test_a_consumer_whose_assignment_was_lost_and_never_returned_is_replaced() -> None:
    consumers: list[StuckConsumer] = []

    def losing() -> StuckConsumer:
        consumer = StuckConsumer({0: 15}, {0: (0, 15)})
        consumer.lose_assignment = not consumers
        return consumer

    service = _run(consumers, losing, restart=True)
    thread = threading.Thread(target=service._run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(consumers) >= 2, 10, 0.01, "a second consumer")
        assert consumers[0].closed
        assert "no partition assigned" in str(service.failure)
        threading.Event().wait(0.6)  # the second consumer keeps its partitions: no more restarts
        assert len(consumers) == 2
    finally:
        service._stop_requested.set()
        thread.join(5)
