"""The realtime stage off the hot path: scrapes that never wait for a batch, idle partitions that
close their windows, parked state that ages out, folded values counted (fake consumer, no broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from streams.realtime_state import register_gauges
from tests.unit.test_realtime_stage import MIN, FakeConsumer, Msg, assign, minutes, stage


def fake() -> Any:
    """The fake consumer, typed loosely: the handler only calls what it fakes."""
    return FakeConsumer()


def gauge(registry: Any, name: str, **labels: str) -> float | None:
    value = registry.get_sample_value(name, labels)
    return None if value is None else float(value)


class ConsumerThread:
    """Runs the handler like the consumer service does: a batch when one is queued, then ``idle``."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.queue: list[list[Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.queue:
                self.handler.batch(fake(), self.queue.pop(0))
            self.handler.idle(fake())
            time.sleep(0.005)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def current_users(registry: Any) -> float | None:
    """One scrape: distinct users of the current window."""
    labels = {"lane": "a", "window": "1m", "state": "current", "dimension": "all", "value": "all"}
    return gauge(registry, "highway_concurrent_users", **labels)


def scrape_until(registry: Any, expected: float) -> float | None:
    deadline = time.monotonic() + 5
    value = current_users(registry)
    while value != expected and time.monotonic() < deadline:
        value = current_users(registry)
    return value


def test_a_scrape_does_not_wait_for_a_long_running_apply() -> None:
    handler, state, _, registry = stage()
    register_gauges(registry, state)
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    windows = state.states[(topic, 0)]
    inside, release, applied = threading.Event(), threading.Event(), threading.Event()
    real_apply = windows.apply

    def slow_apply(*args: Any) -> Any:
        if args[0][0].offset == 3:
            inside.set()
            release.wait(10)
            closed = real_apply(*args)
            applied.set()
            return closed
        return real_apply(*args)

    windows.apply = slow_apply  # type: ignore[method-assign,assignment]
    loop = ConsumerThread(handler)
    try:
        loop.queue.append(minutes(topic, 0, 0, 3))
        assert scrape_until(registry, 1) == 1, "a scrape gets a snapshot built after the batch"

        loop.queue.append(list[Any]([Msg(topic, 0, 3, 2 * MIN + 5, "late-comer")]))
        assert inside.wait(5)
        began = time.monotonic()
        assert current_users(registry) == 1, "the newest snapshot, from before the batch"
        took = time.monotonic() - began
        assert not applied.is_set(), "the batch is still being applied"
        assert took < 1.5, f"the scrape waited {took:.2f}s for the batch"

        release.set()
        assert scrape_until(registry, 2) == 2, "after the batch the next scrape is fresh"
    finally:
        release.set()
        loop.close()


def test_an_idle_partition_follows_the_wall_clock_and_the_closed_window_moves() -> None:
    handler, state, publisher, _registry = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0, 1])
    handler.batch(fake(), list[Any]([*minutes(topic, 0, 0, 3), Msg(topic, 1, 0, 2 * MIN + 7, "p1")]))
    sent = len(publisher.sent)
    since, clock = state.last_record[(topic, 1)]
    timeout = state.settings.realtime_idle_timeout_s
    assert state.idle(since + timeout - 1) == [], "not idle long enough"
    state.behind[(topic, 1)] = 5
    assert state.idle(since + timeout + 120) == [], "a partition with records to read is not idle"
    state.behind[(topic, 1)] = 0
    partials = state.idle(since + timeout + 120)
    # Partition 1's event clock ran on 120 s: its window 2 closed, and its checkpoint says window 3
    # (empty) is closed too; partition 0 is still behind (FakeConsumer: 10 records), so it waits.
    assert [p.key for p in partials] == ["a|120000|1"]
    assert partials[0].record["checkpoint"]["closed_until"] == 4 * MIN
    assert state.states[(topic, 1)].max_ts == clock + 120_000
    assert state.build_snapshots()[0].closed_start == MIN, "partition 0 still holds window 2 open"
    state.behind[(topic, 0)] = 0
    assert [p.key for p in state.idle(since + timeout + 120)] == ["a|120000|0"]
    assert state.build_snapshots()[0].closed_start == 3 * MIN, "the closed gauge moved on"
    assert len(publisher.sent) == sent, "state.idle returns partials; the handler publishes them"


def test_parked_state_is_dropped_after_its_maximum_age() -> None:
    handler, state, _, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(fake(), minutes(topic, 0, 0, 2))
    handler.revoked(fake(), [TopicPartition(topic, 0)])
    parked_at = state.parked_at[(topic, 0)]
    state.idle(parked_at + state.settings.realtime_parked_max_age_s - 1)
    assert (topic, 0) in state.parked
    state.idle(parked_at + state.settings.realtime_parked_max_age_s + 1)
    assert not state.parked
    assert not state.parked_at


class VersionMsg(Msg):
    def __init__(self, topic: str, offset: int, version: str) -> None:
        super().__init__(topic, 0, offset, 5, f"u{offset}")
        self._value = orjson.dumps(
            {
                "user_id": f"u{offset}",
                "server_ts": 5,
                "platform": "web",
                "event_name": "e",
                "app_version": version,
            }
        )


def test_cut_and_folded_values_are_counted_per_dimension() -> None:
    handler, state, _, registry = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    cap = state.settings.realtime_dimension_top_n
    handler.batch(fake(), list[Any]([VersionMsg(topic, i, f"v{i}" + "x" * 100) for i in range(cap + 7)]))
    labels = {"lane": "a", "dimension": "app_version"}
    assert gauge(registry, "highway_realtime_folded_total", reason="length", **labels) == cap + 7
    assert gauge(registry, "highway_realtime_folded_total", reason="cap", **labels) == 7


def test_user_lookup_reads_the_owned_partitions_without_the_consumer_thread() -> None:
    handler, state, _, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(fake(), minutes(topic, 0, 0, 2))
    found = state.lookup("a", "u1")
    assert found["owned_here"] is True
    assert found["last_seen_ms"] == MIN + 1
    handler.revoked(fake(), [TopicPartition(topic, 0)])
    assert state.lookup("a", "u1")["owned_here"] is False
