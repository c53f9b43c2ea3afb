"""``KafkaAdmin.unserved`` / ``wait_until_served`` against a fake AdminClient: a topic is served once
its metadata lists it and its leader answers a ListOffsets for every partition."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connectors import kafka_admin as module
from connectors.kafka_admin import KafkaAdmin
from core.errors import TransientError


class _Topic:
    def __init__(self, partitions: int) -> None:
        self.error = None
        self.partitions = dict.fromkeys(range(partitions))


class _Metadata:
    def __init__(self, topics: dict[str, _Topic]) -> None:
        self.topics = topics


class FakeClient:
    def __init__(self) -> None:
        self.topics = {"a": _Topic(2), "b": _Topic(1)}
        self.loading = {("a", 1)}  # listed in metadata, not served by its leader yet
        self.asked: list[list[tuple[str, int]]] = []

    def list_topics(self, timeout: float) -> _Metadata:
        return _Metadata(dict(self.topics))

    def list_offsets(
        self, request: dict[TopicPartition, Any], request_timeout: float
    ) -> dict[TopicPartition, Future[Any]]:
        self.asked.append(sorted((tp.topic, tp.partition) for tp in request))
        futures: dict[TopicPartition, Future[Any]] = {}
        for tp in request:
            future: Future[Any] = Future()
            if (tp.topic, tp.partition) in self.loading:
                future.set_exception(KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)))
            else:
                future.set_result(object())
            futures[tp] = future
        return futures


def admin_with(client: FakeClient, timeout_s: float = 1.0) -> KafkaAdmin:
    admin = KafkaAdmin.__new__(KafkaAdmin)  # no AdminClient: nothing to connect to
    admin._client = client  # type: ignore[assignment]
    admin._timeout_s = timeout_s
    return admin


def test_a_topic_is_unserved_while_any_partition_is_unserved_or_it_is_not_listed() -> None:
    client = FakeClient()
    admin = admin_with(client)
    assert admin.unserved(["a", "b", "c"]) == {"a", "c"}
    assert client.asked == [[("a", 0), ("a", 1), ("b", 0)]]  # one request for every partition
    client.loading.clear()
    assert admin.unserved(["a", "b"]) == set()
    assert admin.unserved([]) == set()


def test_waiting_until_served_gives_up_with_the_topic_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "SERVED_POLL_S", 0.001)
    client = FakeClient()
    with pytest.raises(TransientError, match="'a'"):
        admin_with(client, timeout_s=0.05).wait_until_served(["a", "b"])
    assert client.asked[-1] == [("a", 0), ("a", 1)]  # only what still waits is asked again
    client.loading.clear()
    admin_with(client).wait_until_served(["a", "b"])
