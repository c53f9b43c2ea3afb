"""The topic provisioner's thread (``connectors.topic_provisioner``) with a fake creator and readiness.

Time constants are shrunk so that retries and the degraded state show within a fraction of a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors import topic_provisioner as module
from connectors.topic_provisioner import TopicProvisioner


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "ROUND_WAIT_S", 0.01)
    monkeypatch.setattr(module, "MAX_BACKOFF_S", 0.04)
    monkeypatch.setattr(module, "IDLE_WAIT_S", 0.05)
    monkeypatch.setattr(module, "DEGRADED_AFTER_S", 0.5)


def wait_for(condition: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class FakeCreator:
    """Creates what it is asked for, except names in ``refuse`` (for good) and ``fail`` (for now)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.refuse: dict[str, str] = {}
        self.fail: dict[str, str] = {}
        self.raise_next: Exception | None = None
        self.hold = threading.Event()
        self.hold.set()
        self.lock = threading.Lock()
        self.loading: set[str] = set()  # created, but their leaders do not serve them yet
        self.served_asks: list[list[str]] = []

    def create_each(
        self, names: Iterable[str], partitions: int, config: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str], dict[str, str]]:
        names = list(names)
        with self.lock:
            self.calls.append(names)
        self.hold.wait(5)
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        refused = {n: self.refuse[n] for n in names if n in self.refuse}
        failed = {n: self.fail[n] for n in names if n in self.fail}
        return [n for n in names if n not in refused and n not in failed], refused, failed

    def unserved(self, topics: Iterable[str]) -> set[str]:
        topics = list(topics)
        with self.lock:
            self.served_asks.append(topics)
        return set(topics) & self.loading


class Readiness:
    def __init__(self) -> None:
        self.ready: set[str] = set()
        self.asked: list[str] = []

    def __call__(self, topic: str) -> bool:
        self.asked.append(topic)
        return topic in self.ready


@pytest.fixture
def rig() -> Iterator[tuple[TopicProvisioner, FakeCreator, Readiness]]:
    creator, readiness = FakeCreator(), Readiness()
    provisioner = TopicProvisioner(creator, readiness, partitions=3)
    yield provisioner, creator, readiness
    creator.hold.set()
    provisioner.close()


Rig = tuple[TopicProvisioner, FakeCreator, Readiness]


def collect(provisioner: TopicProvisioner, until: Callable[[list[str], dict[str, str]], bool]) -> bool:
    ready: list[str] = []
    refused: dict[str, str] = {}

    def more() -> bool:
        got, lost = provisioner.take_results()
        ready.extend(got)
        refused.update(lost)
        return until(ready, refused)

    return wait_for(more)


def test_topics_asked_together_are_created_in_one_request(rig: Rig) -> None:
    provisioner, creator, readiness = rig
    creator.hold.clear()
    provisioner.request(["b", "a", "c"])
    assert wait_for(lambda: len(creator.calls) == 1)
    provisioner.request(["d"])  # while a round runs: batched into the next one
    provisioner.request(["e", "a"])  # "a" is asked already
    creator.hold.set()
    assert wait_for(lambda: len(creator.calls) == 2)
    assert creator.calls == [["a", "b", "c"], ["d", "e"]]
    readiness.ready.update("abcde")
    assert collect(provisioner, lambda ready, _: sorted(ready) == ["a", "b", "c", "d", "e"])
    assert provisioner.created == 5
    assert provisioner.waiting == 0


def test_a_topic_is_ready_only_once_the_producer_sees_it(rig: Rig) -> None:
    provisioner, creator, readiness = rig
    provisioner.request(["a"])
    assert wait_for(lambda: readiness.asked.count("a") >= 3)  # created, then confirmed again and again
    assert provisioner.take_results() == ([], {})
    assert len(creator.calls) == 1
    readiness.ready.add("a")
    assert collect(provisioner, lambda ready, _: ready == ["a"])
    time.sleep(0.05)
    assert provisioner.take_results() == ([], {})  # reported once
    assert provisioner.waiting == 0


def test_a_topic_refused_for_good_is_reported_and_not_retried(rig: Rig) -> None:
    provisioner, creator, readiness = rig
    creator.refuse["bad"] = "INVALID_TOPIC_EXCEPTION"
    readiness.ready.add("good")
    provisioner.request(["bad", "good"])
    assert collect(provisioner, lambda ready, refused: ready == ["good"] and "bad" in refused)
    time.sleep(0.1)
    assert creator.calls == [["bad", "good"]]
    assert provisioner.waiting == 0
    assert provisioner.degraded is None


def test_a_transient_failure_is_retried_with_backoff_and_reported_degraded(rig: Rig) -> None:
    provisioner, creator, readiness = rig
    creator.fail["a"] = "REQUEST_TIMED_OUT"
    readiness.ready.add("a")
    provisioner.request(["a"])
    assert wait_for(lambda: len(creator.calls) >= 3)
    assert provisioner.degraded is None  # not yet: short delays are normal
    assert wait_for(lambda: provisioner.degraded is not None)
    reason = provisioner.degraded or ""
    assert "1 new topics not ready" in reason
    assert "creating a: REQUEST_TIMED_OUT" in reason
    assert provisioner.retries > 0
    assert provisioner.take_results() == ([], {})
    del creator.fail["a"]
    assert collect(provisioner, lambda ready, _: ready == ["a"])
    assert provisioner.degraded is None


def test_the_thread_survives_exceptions(rig: Rig) -> None:
    provisioner, creator, readiness = rig
    creator.raise_next = RuntimeError("admin client broke")
    readiness.ready.add("a")
    provisioner.request(["a"])
    assert collect(provisioner, lambda ready, _: ready == ["a"])
    assert len(creator.calls) >= 2
    assert provisioner.retries >= 1


def test_a_topic_the_producer_sees_is_ready_only_once_its_leader_serves_it(rig: Rig) -> None:
    """Metadata names a new topic's leader before the leader loads it; a record sent in between is
    refused, and lost if a later request succeeds first (librdkafka's implicit acknowledgement)."""
    provisioner, creator, readiness = rig
    creator.loading.update({"a", "b"})
    readiness.ready.update({"a", "b", "c"})
    provisioner.request(["a", "b", "c"])
    assert collect(provisioner, lambda ready, _: ready == ["c"])
    assert wait_for(lambda: sum("a" in asked for asked in creator.served_asks) >= 3)
    assert provisioner.take_results() == ([], {})
    assert ["a", "b", "c"] in creator.served_asks  # the topics of a round asked together
    creator.loading.discard("b")
    assert collect(provisioner, lambda ready, _: ready == ["b"])
    creator.loading.clear()
    assert collect(provisioner, lambda ready, _: ready == ["a"])
    assert provisioner.waiting == 0


def test_metadata_errors_while_confirming_are_retried() -> None:
    failures = [KafkaException(KafkaError(KafkaError._TRANSPORT)), RuntimeError("unexpected")]

    def flaky(topic: str) -> bool:
        if failures:
            raise failures.pop(0)
        return True

    provisioner = TopicProvisioner(FakeCreator(), flaky, partitions=1)
    try:
        provisioner.request(["a"])
        assert collect(provisioner, lambda ready, _: ready == ["a"])
        assert failures == []
    finally:
        provisioner.close()
