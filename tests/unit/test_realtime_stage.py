"""The realtime stage's batch handler with fake consumer, view and publisher (no broker).

Covers where partitions start (checkpoint, parked state, eviction), that closed windows are
published with their checkpoints, that a failed partial stops the stage, and that the counters live
on the registry passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client import CollectorRegistry

from core.errors import TransientError
from core.realtime.params import BadParameter
from core.realtime.publish import PartialNotPublished
from core.realtime.windows import Checkpoint
from core.routing.naming import router_input_group
from streams.realtime import RealtimeHandler
from streams.realtime_api import query
from streams.realtime_state import RealtimeMetrics, RealtimeState
from streams.realtime_upstream import RouterDrained
from tests.conftest import isolated_settings

MIN = 60_000


class FakeView:
    def __init__(self) -> None:
        self.records_by_lane: dict[str, list[dict[str, Any]]] = {}
        self.caught_up = 0

    def wait_caught_up(self) -> None:
        self.caught_up += 1

    def records(self, lane: str) -> list[dict[str, Any]]:
        return self.records_by_lane.get(lane, [])


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str, Mapping[str, Any]]] = []
        self.waits = 0

    def send(self, lane: str, key: str, record: Mapping[str, Any]) -> None:
        self.sent.append((lane, key, record))

    def wait(self) -> None:
        self.waits += 1
        if self.fail and self.sent:
            raise RuntimeError("broker away")


class FakeConsumer:
    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None, 1: None})})

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 1000

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 990) for tp in partitions]


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, ts: int, user: str) -> None:
        self._args = (topic, partition, offset)
        self._value = orjson.dumps({"user_id": user, "server_ts": ts, "platform": "web", "event_name": "e"})

    def topic(self) -> str:
        return self._args[0]

    def partition(self) -> int:
        return self._args[1]

    def offset(self) -> int:
        return self._args[2]

    def value(self) -> bytes:
        return self._value


def stage(fail: bool = False) -> tuple[RealtimeHandler, RealtimeState, FakePublisher, CollectorRegistry]:
    settings = isolated_settings(lanes=["a"], realtime_allowed_lateness_s=0, realtime_sliding_window_s=60)
    registry = CollectorRegistry()
    state = RealtimeState(settings, RealtimeMetrics.on(registry))
    state.view = FakeView()  # type: ignore[assignment]
    publisher = FakePublisher(fail)
    return RealtimeHandler(state, publisher), state, publisher, registry


def assign(handler: RealtimeHandler, topic: str, partitions: list[int]) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in partitions]
    handler.assigned(FakeConsumer(), tps)  # type: ignore[arg-type]
    return {tp.partition: tp.offset for tp in tps}


def minutes(topic: str, partition: int, first_offset: int, count: int) -> list[Any]:
    """One event per minute, each closing the window before it."""
    return [Msg(topic, partition, first_offset + i, i * MIN + 1, f"u{i}") for i in range(count)]


def test_start_at_the_checkpoint_or_the_beginning() -> None:
    handler, state, _, _ = stage()
    topic = state.settings.common_topic("a")
    checkpoint = Checkpoint(resume_offset=7, resume_max_ts=MIN, closed_until=MIN, next_offset=9)
    record = {"partition": 1, "window_start": 0, "checkpoint": asdict(checkpoint)}
    state.view.records_by_lane["a"] = [record]  # type: ignore[union-attr]
    assert assign(handler, topic, [0, 1]) == {0: OFFSET_BEGINNING, 1: 7}
    assert state.partitions == {"a": 2}


def test_closed_windows_are_published_with_checkpoints_and_counted_on_the_registry() -> None:
    handler, state, publisher, registry = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(FakeConsumer(), minutes(topic, 0, 0, 3))  # type: ignore[arg-type]
    assert [key for _, key, _ in publisher.sent] == ["a|0|0", "a|60000|0"]
    assert publisher.sent[-1][2]["checkpoint"]["resume_offset"] == 2
    assert registry.get_sample_value("highway_events_total", {"lane": "a", "event_name": "e"}) == 3
    assert stage()[3].get_sample_value("highway_events_total", {"lane": "a", "event_name": "e"}) is None


def test_a_partial_not_published_stops_the_stage_and_nothing_more_is_awaited() -> None:
    handler, state, publisher, _ = stage(fail=True)
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    with pytest.raises(PartialNotPublished):
        handler.batch(FakeConsumer(), minutes(topic, 0, 0, 3))  # type: ignore[arg-type]
    assert [key for _, key, _ in publisher.sent] == ["a|0|0"], "the later window was never sent"
    waits = publisher.waits
    handler.revoked(FakeConsumer(), [TopicPartition(topic, 0)])  # type: ignore[arg-type]
    handler.stopping(FakeConsumer())  # type: ignore[arg-type]
    assert publisher.waits == waits


def test_revoked_parks_and_a_returning_partition_continues_when_at_least_as_far() -> None:
    handler, state, publisher, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0, 1])
    handler.batch(FakeConsumer(), minutes(topic, 0, 0, 3))  # type: ignore[arg-type]
    waits = publisher.waits
    handler.revoked(FakeConsumer(), [TopicPartition(topic, 0), TopicPartition(topic, 1)])  # type: ignore[arg-type]
    assert publisher.waits == waits + 1, "revocation waits for every sent partial"
    assert set(state.parked) == {(topic, 0), (topic, 1)}
    assert not state.states
    parked = state.parked[(topic, 0)]
    # Our own checkpoint (next_offset 3) is not ahead of the parked state: continue from it.
    state.view.records_by_lane["a"] = [r for _, _, r in publisher.sent]  # type: ignore[union-attr]
    assert assign(handler, topic, [0]) == {0: 3}
    assert state.states[(topic, 0)] is parked
    assert (topic, 1) not in state.parked, "parked partitions outside the new assignment are evicted"


def test_api_answers_from_the_published_partials_and_rejects_bad_times() -> None:
    handler, state, publisher, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(FakeConsumer(), minutes(topic, 0, 0, 3))  # type: ignore[arg-type]
    state.view.records_by_lane["a"] = [dict(r) for _, _, r in publisher.sent]  # type: ignore[union-attr]
    answer = query(state, {"from": "0", "to": str(2 * MIN)}, {"1m": "users"})
    assert [(w["window_start"], w["counts"]["all"]) for w in answer["windows"]] == [(0, 1), (MIN, 1)]
    with pytest.raises(BadParameter, match="not a finite number"):
        query(state, {"from": "1e400"}, {"1m": "users"})


def test_a_returning_partition_restores_when_another_worker_got_further() -> None:
    handler, state, _, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(FakeConsumer(), minutes(topic, 0, 0, 2))  # type: ignore[arg-type]
    handler.revoked(FakeConsumer(), [TopicPartition(topic, 0)])  # type: ignore[arg-type]
    ahead = Checkpoint(resume_offset=40, resume_max_ts=50 * MIN, closed_until=50 * MIN, next_offset=45)
    state.view.records_by_lane["a"] = [  # type: ignore[union-attr]
        {"partition": 0, "window_start": 49 * MIN, "checkpoint": asdict(ahead)}
    ]
    assert assign(handler, topic, [0]) == {0: 40}
    assert state.states[(topic, 0)].max_ts == 50 * MIN
    assert not state.parked


def test_a_quiet_partition_closes_its_windows_only_once_the_router_has_routed_everything() -> None:
    """While the router is down or the broker away, events of the open windows are still on their
    way: the wall clock may close a quiet partition's windows only when upstream is drained."""
    handler, state, _, _ = stage()
    topic = state.settings.common_topic("a")
    assign(handler, topic, [0])
    handler.batch(FakeConsumer(), minutes(topic, 0, 0, 1))  # type: ignore[arg-type]
    state.behind[(topic, 0)] = 0  # everything of the common topic read
    asked: list[bool] = []

    def router(drained: bool) -> Callable[[], bool]:
        def ask() -> bool:
            asked.append(drained)
            return drained

        return ask

    early = time.monotonic() + 1
    assert state.idle(early, router(True)) == []
    assert asked == [], "upstream is asked only when a partition has been quiet long enough"
    later = time.monotonic() + state.settings.realtime_idle_timeout_s + 180
    assert state.idle(later, router(False)) == []
    assert asked == [False]
    assert [partial.key for partial in state.idle(later, router(True))] == ["a|0|0"]


class FakeAdmin:
    def __init__(self, lags: list[int | Exception | None]) -> None:
        self.lags = lags
        self.asked: list[tuple[str, str]] = []

    def group_lag(self, group: str, topic: str) -> int | None:
        self.asked.append((group, topic))
        lag = self.lags.pop(0)
        if isinstance(lag, Exception):
            raise lag
        return lag


@pytest.mark.parametrize(
    ("lag", "drained"),
    [(0, True), (None, True), (12, False), (TransientError("broker away"), False)],
)
def test_the_router_is_drained_when_its_group_committed_every_input_offset(
    lag: int | Exception | None, drained: bool
) -> None:
    settings = isolated_settings(lanes=["a"])
    admin = FakeAdmin([lag])
    gate = RouterDrained(settings, cast(Any, admin))
    assert gate() is drained
    assert admin.asked == [(router_input_group(settings.app_id), settings.all_events_topic("a"))]
    assert gate() is drained
    assert len(admin.asked) == 1, "an answer is reused for a second, not asked after every poll"
