"""The concurrency publisher keeps each input partition's partials in one ordered topic partition."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

import connectors.metrics_topic as metrics_topic
from core.errors import TransientError
from core.settings import Settings
from tests.conftest import isolated_settings


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.produced: list[tuple[str, int, bytes]] = []
        self.callbacks: list[Any] = []
        self.fail_keys: set[bytes] = set()

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {index: object() for index in range(4)}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)})

    def produce(self, topic: str, value: bytes, key: bytes, partition: int, on_delivery: Any) -> None:
        self.produced.append((topic, partition, key))
        self.callbacks.append((on_delivery, topic, key))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for on_delivery, topic, key in self.callbacks:
            error = "broker says no" if key in self.fail_keys else None
            on_delivery(error, SimpleNamespace(topic=lambda t=topic: t, key=lambda k=key: k))
        self.callbacks = []
        return 0


def test_partials_of_one_input_partition_share_a_topic_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_topic, "Producer", FakeProducer)
    settings: Settings = isolated_settings(lanes=["a"])
    publisher = metrics_topic.ConcurrencyPublisher(settings)
    records = [
        (f"a|{start}|{partition}", {"partition": partition, "window_start": start})
        for start in (60_000, 120_000, 180_000)
        for partition in range(6)
    ]
    for key, record in records:
        publisher.send("a", key, record)
    produced = publisher._producer.produced  # type: ignore[attr-defined]
    by_input: dict[int, set[int]] = {}
    for (_, partition, _key), (_, record) in zip(produced, records, strict=True):
        by_input.setdefault(record["partition"], set()).add(partition)
    assert by_input == {0: {0}, 1: {1}, 2: {2}, 3: {3}, 4: {0}, 5: {1}}
    assert [key for _, _, key in produced] == [key.encode() for key, _ in records]


def test_wait_raises_when_a_sent_partial_was_not_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_topic, "Producer", FakeProducer)
    publisher = metrics_topic.ConcurrencyPublisher(isolated_settings(lanes=["a"]))
    producer: FakeProducer = publisher._producer  # type: ignore[assignment]
    producer.fail_keys = {b"a|60000|1"}
    publisher.send("a", "a|60000|0", {"partition": 0})
    publisher.wait()
    publisher.send("a", "a|60000|1", {"partition": 1})
    with pytest.raises(TransientError, match=re.escape("a|60000|1")):
        publisher.wait()
    publisher.send("a", "a|120000|0", {"partition": 0})
    publisher.wait()  # the failure was reported once, not carried into later waits
