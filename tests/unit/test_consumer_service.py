"""The shared consumer service, driven with a fake consumer: order of callbacks, stop, crash."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from core.errors import TransientError
from streams.consumer import BatchHandler, ConsumerService, subscription_for


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, error: Any = None) -> None:
        self._t, self._p, self._o, self._e = topic, partition, offset, error

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def error(self) -> Any:
        return self._e


class FakeConsumer:
    """Assigns two partitions on the first poll, then serves queued batches, then empty polls."""

    def __init__(self, config: dict[str, Any], batches: list[list[FakeMessage]]) -> None:
        self.config = config
        self.batches = list(batches)
        self.callbacks: dict[str, Any] = {}
        self.assigned: list[tuple[str, int, int]] = []
        self.closed = False
        self.polls = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self.callbacks = callbacks

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        self.polls += 1
        if self.polls == 1:
            self.callbacks["on_assign"](self, [TopicPartition("t", 0), TopicPartition("t", 1)])
        return self.batches.pop(0) if self.batches else []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(p.topic, p.partition, p.offset) for p in partitions]

    def unassign(self) -> None:
        self.assigned = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition, _ in self.assigned]

    def close(self) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition("t", 0), TopicPartition("t", 1)])
        self.closed = True


class Recorder(BatchHandler):
    def __init__(self, fail_on_batch: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_on_batch = fail_on_batch
        self.batches_seen = threading.Event()

    def assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.calls.append(f"assigned {[p.partition for p in partitions]}")
        for tp in partitions:
            tp.offset = 10 + tp.partition

    def revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.calls.append(f"revoked {[p.partition for p in partitions]}")

    def batch(self, consumer: Any, messages: list[Any]) -> None:
        if self.fail_on_batch:
            raise RuntimeError("handler broke on offset 10")
        self.calls.append(f"batch {[m.offset() for m in messages]}")
        self.batches_seen.set()

    def stopping(self, consumer: Any) -> None:
        self.calls.append("stopping")

    def lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.calls.append(f"lost {[p.partition for p in partitions]}")


def _service(
    handler: Recorder, batches: list[list[FakeMessage]]
) -> tuple[ConsumerService, list[FakeConsumer]]:
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> Any:
        consumer = FakeConsumer(config, batches)
        made.append(consumer)
        return consumer

    service = ConsumerService("test", {"group.id": "g"}, ["t"], handler, consumer_factory=factory)
    return service, made


async def _crash_reason(service: ConsumerService) -> BaseException | None:
    """Start ``service``, wait up to 2 s for the crash its thread schedules, stop it, return the reason."""
    await service.start()
    for _ in range(200):
        if service.crash_reason is not None:
            break
        await asyncio.sleep(0.01)
    reason = service.crash_reason
    await service.stop()
    return reason


def test_partition_changes_and_batches_reach_the_handler_in_order() -> None:
    handler = Recorder()
    errored = FakeMessage("t", 0, 11, error=_Error(fatal=False))
    service, made = _service(handler, [[FakeMessage("t", 0, 10), errored, FakeMessage("t", 1, 11)]])

    async def run() -> None:
        await service.start()
        await asyncio.to_thread(handler.batches_seen.wait, 5)
        await service.stop()

    asyncio.run(run())
    assert handler.calls == ["assigned [0, 1]", "batch [10, 11]", "stopping", "revoked [0, 1]"]
    assert made[0].closed
    assert service.failure is None


def test_a_handler_failure_crashes_the_service_with_its_reason() -> None:
    handler = Recorder(fail_on_batch=True)
    service, made = _service(handler, [[FakeMessage("t", 0, 10)]])

    reason = asyncio.run(_crash_reason(service))
    assert isinstance(reason, RuntimeError)
    assert "offset 10" in str(reason)
    assert made[0].closed  # the consumer is closed even when the handler fails


def test_fatal_consumer_errors_crash_too() -> None:
    handler = Recorder()
    service, _ = _service(handler, [[FakeMessage("t", 0, 10, error=_Error(fatal=True))]])

    assert asyncio.run(_crash_reason(service)) is not None


def test_subscription_is_names_or_one_regex() -> None:
    assert subscription_for(["a", "b"]) == ["a", "b"]
    assert subscription_for(["^x\\..*"]) == ["^x\\..*"]
    with pytest.raises(ValueError, match="one"):
        subscription_for(["^x", "b"])
    with pytest.raises(ValueError, match="at least"):
        subscription_for([])


class _Error:
    def __init__(self, fatal: bool) -> None:
        self._fatal = fatal

    def code(self) -> int:
        return -1

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return "fake error"


def test_a_stage_stuck_at_stop_does_not_keep_the_process_from_stopping() -> None:
    class Stuck(Recorder):
        def stopping(self, consumer: Any) -> None:
            release.wait(10)  # e.g. waiting for acks from a broker that is gone

    release = threading.Event()
    handler = Stuck()
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> Any:
        made.append(FakeConsumer(config, [[FakeMessage("t", 0, 10)]]))
        return made[-1]

    service = ConsumerService("stuck", {}, ["t"], handler, consumer_factory=factory, stop_timeout_s=0.2)

    async def run() -> None:
        await service.start()
        await asyncio.to_thread(handler.batches_seen.wait, 5)
        await service.stop()

    try:
        asyncio.run(run())
        assert not service.join(0)  # still stuck in stopping(), yet stop() returned
    finally:
        release.set()
    assert service.join(5)


class Flaky(Recorder):
    """Fails its first ``failures`` batches (or, with ``in_starting``, its first starts) transiently."""

    def __init__(self, failures: int, in_starting: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.in_starting = in_starting

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("broker away")

    def starting(self) -> None:
        if self.in_starting:
            self._maybe_fail()

    def batch(self, consumer: Any, messages: list[Any]) -> None:
        if not self.in_starting:
            self._maybe_fail()
        super().batch(consumer, messages)


def _restartable(
    handler: Recorder, healthy_run_s: float = 0.2, deadline_s: float = 60.0
) -> tuple[ConsumerService, list[FakeConsumer]]:
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> Any:
        made.append(FakeConsumer(config, [[FakeMessage("t", 0, 10)]]))
        return made[-1]

    service = ConsumerService(
        "restartable",
        {},
        ["t"],
        handler,
        consumer_factory=factory,
        restart_on_failure=True,
        failure_deadline_s=deadline_s,
        restart_backoff_s=(0.01, 0.05),
    )
    service.HEALTHY_RUN_S = healthy_run_s
    return service, made


def _watch_health(
    service: ConsumerService, until: Callable[[list[str]], bool], timeout_s: float = 5.0
) -> list[str]:
    """Start ``service``, note its changes of health until ``until(seen)``, stop it; the states seen."""
    seen: list[str] = []

    async def run() -> None:
        await service.start()
        for _ in range(int(timeout_s / 0.005)):
            state, _ = service.health()
            if not seen or seen[-1] != state:
                seen.append(state)
            if until(seen):
                break
            await asyncio.sleep(0.005)
        await service.stop()

    asyncio.run(run())
    return seen


def test_a_restartable_service_recovers_from_a_transient_failure() -> None:
    handler = Flaky(failures=1)
    service, made = _restartable(handler)
    seen = _watch_health(service, until=lambda seen: seen[-2:] == ["degraded", "ok"])
    assert seen[-2:] == ["degraded", "ok"], seen
    assert len(made) == 2  # a new consumer after the failure
    assert service.restarts == 1
    assert service.crash_reason is None
    first = handler.calls[: handler.calls.index("lost [0, 1]") + 1]
    assert first == [
        "assigned [0, 1]",
        "lost [0, 1]",
    ]  # the failed attempt's partitions are lost, not revoked
    assert handler.calls.count("batch [10]") == 1
    assert handler.calls[-2:] == ["stopping", "revoked [0, 1]"]


@pytest.mark.parametrize("in_starting", [False, True], ids=["in_batch", "in_starting"])
def test_a_service_failing_past_its_deadline_is_failed_and_keeps_trying(in_starting: bool) -> None:
    handler = Flaky(failures=10_000, in_starting=in_starting)
    service, _ = _restartable(handler, healthy_run_s=0.2, deadline_s=0.3)
    seen = _watch_health(service, until=lambda seen: seen[-1] == "failed")
    assert seen[-1] == "failed", seen
    assert "degraded" in seen
    assert service.restarts >= 3
    reason = service.health()[1] or ""
    assert "broker away" in reason
    assert service.crash_reason is None


def test_a_service_that_is_not_restartable_reports_failed_and_is_not_restarted() -> None:
    handler = Recorder(fail_on_batch=True)
    service, made = _service(handler, [[FakeMessage("t", 0, 10)]])
    assert asyncio.run(_crash_reason(service)) is not None
    assert service.health()[0] == "failed"
    assert len(made) == 1


def test_lag_is_the_distance_from_each_position_to_its_high_watermark_plus_held_records() -> None:
    class Watermarked(FakeConsumer):
        def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
            # partition 1 has no position yet (never fetched): it adds nothing rather than a guess
            return [
                TopicPartition(p.topic, p.partition, 12 if p.partition == 0 else -1001) for p in partitions
            ]

        def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
            assert cached  # never a broker round trip from the consumer thread
            return 0, 40

    class Buffering(Recorder):
        def held_records(self) -> int:
            return 5  # read, not done with (a lake buffer): still lag

    handler = Buffering()
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> Any:
        made.append(Watermarked(config, [[FakeMessage("t", 0, 10)]]))
        return made[-1]

    service = ConsumerService("lagged", {}, ["t"], handler, consumer_factory=factory)

    async def run() -> None:
        await service.start()
        for _ in range(500):
            if service.lag:
                break
            await asyncio.sleep(0.01)
        await service.stop()

    asyncio.run(run())
    assert service.lag == 28 + 5


def test_a_thread_stuck_in_one_call_reads_degraded_and_ok_again_once_back() -> None:
    class Blocked(Recorder):
        def batch(self, consumer: Any, messages: list[Any]) -> None:
            super().batch(consumer, messages)
            release.wait(10)  # e.g. a client call that outlived its own timeout

    release = threading.Event()
    handler = Blocked()

    def factory(config: dict[str, Any]) -> Any:
        return FakeConsumer(config, [[FakeMessage("t", 0, 10)]])

    service = ConsumerService("blocked", {}, ["t"], handler, consumer_factory=factory, busy_s=0.2)

    async def run() -> list[tuple[str, str | None]]:
        await service.start()
        await asyncio.to_thread(handler.batches_seen.wait, 5)
        await asyncio.sleep(0.4)
        stuck = service.health()
        release.set()
        for _ in range(200):
            if service.health()[0] == "ok":
                break
            await asyncio.sleep(0.01)
        back = service.health()
        await service.stop()
        return [stuck, back]

    stuck, back = asyncio.run(run())
    state, reason = stuck
    assert state == "degraded"
    assert "has not polled" in str(reason)
    assert back == ("ok", None)
