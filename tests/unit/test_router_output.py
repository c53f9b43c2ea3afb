"""The router's output session (``connectors.router_output.RouterOutput``) over a fake producer.

The fake plays librdkafka's part: delivery errors reach ``on_delivery`` while ``flush`` or
``commit_transaction`` runs, and any step can raise the ``KafkaException`` the test asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connectors.kafka_config import USER_PARTITIONER, router_producer_config
from connectors.router_output import RouterOutput
from core.errors import TransientError
from core.routing.classify import OutRecord, SourceRecord
from core.routing.ports import RefusedRecord
from tests.conftest import isolated_settings

SOURCE = "default.events.all"
OFFSETS = {(SOURCE, 0): 13, (SOURCE, 2): 5}


def kafka_error(code: int, *, fatal: bool = False, abortable: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, f"fake {code}", fatal=fatal, txn_requires_abort=abortable))


class FakeMessage:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class FakeProducer:
    """Records every call in ``log`` (shared with the group); ``fail[step]`` raises once at that step.

    ``undelivered`` (value → error) is reported through ``on_delivery`` at the next flush or commit;
    ``unflushed`` records stay in the queue after ``flush``.
    """

    def __init__(self, config: dict[str, Any], log: list[str]) -> None:
        self.config = config
        self.log = log
        self.fail: dict[str, KafkaException | BufferError] = {}
        self.produced: list[tuple[str, bytes]] = []
        self.undelivered: dict[bytes, KafkaError] = {}
        self.unflushed = 0
        self.offsets: list[TopicPartition] = []
        self.metadata: object = None

    def _step(self, name: str) -> None:
        self.log.append(name)
        exc = self.fail.pop(name, None)
        if exc is not None:
            raise exc

    def _deliver(self) -> None:
        for topic, value in self.produced:
            if value in self.undelivered:
                self.config["on_delivery"](self.undelivered.pop(value), FakeMessage(topic, value))

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
        self._step("produce")
        self.produced.append((topic, value))

    def poll(self, timeout: float) -> int:
        self._step("poll")
        return 0

    def flush(self, timeout: float) -> int:
        self._step("flush")
        self._deliver()
        return self.unflushed

    def init_transactions(self, timeout: float) -> None:
        self._step("init_transactions")

    def begin_transaction(self) -> None:
        self._step("begin_transaction")

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], metadata: object, timeout: float
    ) -> None:
        self._step("send_offsets_to_transaction")
        self.offsets, self.metadata = positions, metadata

    def commit_transaction(self, timeout: float) -> None:
        self._deliver()
        self._step("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self._step("abort_transaction")

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        self._step("purge")

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self._step("list_topics")
        return self.metadata


class FakeGroup:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.commits: list[dict[tuple[str, int], int]] = []
        self.fail: Exception | None = None

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.log.append("group.commit")
        if self.fail is not None:
            raise self.fail
        self.commits.append(dict(offsets))

    def group_metadata(self) -> object:
        return "member-1"


class Rig:
    def __init__(self, delivery: str = "exactly_once") -> None:
        self.log: list[str] = []
        self.made: list[FakeProducer] = []
        self.group = FakeGroup(self.log)
        self.fail_next: dict[str, KafkaException | BufferError] = {}  # for the next producer made
        self.output = RouterOutput(
            isolated_settings(router_delivery=delivery), "default", "slot-1", producer_factory=self._factory
        )

    def _factory(self, config: dict[str, Any]) -> Any:
        self.made.append(FakeProducer(config, self.log))
        self.made[-1].fail, self.fail_next = self.fail_next, {}
        return self.made[-1]

    @property
    def producer(self) -> FakeProducer:
        return self.made[-1]

    def send(self, *values: bytes) -> list[tuple[int, str]]:
        source = SourceRecord(b"k", b"raw", 0, 1, None)
        return self.output.send([OutRecord("default.event.a", b"u", v, 1, [], source) for v in values])


def test_exactly_once_commits_one_transaction_per_unit_with_its_offsets() -> None:
    rig = Rig()
    assert rig.output.atomic
    assert rig.output.config["transactional.id"].endswith("-router-default-slot-1")
    for _ in range(2):
        rig.output.begin()
        rig.output.begin()  # idempotent while the transaction is open
        assert rig.send(b"a", b"b") == []
        assert rig.output.commit(OFFSETS, rig.group) == []
    assert len(rig.made) == 1
    assert rig.log == ["init_transactions"] + 2 * [
        "begin_transaction",
        "produce",
        "produce",
        "poll",
        "flush",
        "send_offsets_to_transaction",
        "commit_transaction",
    ]
    offsets = {(tp.topic, tp.partition): tp.offset for tp in rig.producer.offsets}
    assert offsets == OFFSETS
    assert rig.producer.metadata == "member-1"
    assert rig.group.commits == []  # the offsets went into the transaction


def test_an_abortable_commit_error_aborts_and_is_transient() -> None:
    rig = Rig()
    rig.output.begin()
    rig.send(b"a")
    rig.producer.fail["commit_transaction"] = kafka_error(KafkaError._TIMED_OUT, abortable=True)
    with pytest.raises(TransientError, match="not committed"):
        rig.output.commit(OFFSETS, rig.group)
    assert rig.log[-1] == "abort_transaction"
    rig.output.begin()  # a new producer: a new epoch, no sequence number of the aborted unit again
    assert rig.log[-2:] == ["init_transactions", "begin_transaction"]
    assert len(rig.made) == 2


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_no_unit_after_an_abort_is_sent_by_the_aborted_units_producer(delivery: str) -> None:
    """librdkafka numbers the records after an abort as if none of the purged ones had reached the
    broker; one that had would make the broker take a later record for its duplicate and drop it."""
    rig = Rig(delivery)
    rig.output.begin()
    rig.send(b"a")
    aborted = rig.producer
    rig.output.abort()
    rig.output.begin()
    rig.send(b"b")
    assert rig.producer is not aborted
    assert aborted.produced == [("default.event.a", b"a")]
    assert rig.producer.produced == [("default.event.a", b"b")]
    assert rig.output.commit(OFFSETS, rig.group) == []
    rig.output.abort()  # nothing open: nothing aborted, the producer is kept
    rig.output.begin()
    assert len(rig.made) == 2


def test_records_refused_for_good_come_back_from_an_aborted_commit() -> None:
    rig = Rig()
    rig.output.begin()
    rig.send(b"ok", b"huge")
    rig.producer.undelivered[b"huge"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    rig.producer.fail["commit_transaction"] = kafka_error(KafkaError._INCONSISTENT, abortable=True)
    refused = rig.output.commit(OFFSETS, rig.group)
    assert [(r.topic, r.value) for r in refused] == [("default.event.a", b"huge")]
    assert isinstance(refused[0], RefusedRecord)
    assert rig.log[-1] == "abort_transaction"


def test_a_transient_delivery_failure_beside_a_refusal_is_not_a_refusal() -> None:
    rig = Rig()
    rig.output.begin()
    rig.send(b"huge", b"late")
    rig.producer.undelivered[b"huge"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    rig.producer.undelivered[b"late"] = KafkaError(KafkaError._MSG_TIMED_OUT)
    rig.producer.fail["commit_transaction"] = kafka_error(KafkaError._INCONSISTENT, abortable=True)
    with pytest.raises(TransientError, match="delivery failure"):
        rig.output.commit(OFFSETS, rig.group)
    assert rig.log[-1] == "abort_transaction"


def test_a_delivery_failure_seen_before_the_commit_aborts_even_if_the_commit_would_succeed() -> None:
    rig = Rig()
    rig.output.begin()
    rig.send(b"ok", b"lost")
    rig.producer.undelivered[b"lost"] = KafkaError(KafkaError._UNKNOWN_TOPIC)
    with pytest.raises(TransientError, match=r"1 records failed delivery.*_UNKNOWN_TOPIC"):
        rig.output.commit(OFFSETS, rig.group)
    assert "commit_transaction" not in rig.log
    assert "send_offsets_to_transaction" not in rig.log
    assert rig.log[-1] == "abort_transaction"


def test_a_fatal_error_recreates_the_producer_which_inits_transactions_again() -> None:
    rig = Rig()
    rig.output.begin()
    rig.send(b"a")
    rig.producer.fail["commit_transaction"] = kafka_error(KafkaError._FENCED, fatal=True)
    with pytest.raises(TransientError):
        rig.output.commit(OFFSETS, rig.group)
    assert rig.output.recreated == 1
    assert "abort_transaction" not in rig.log  # a fatal producer cannot abort: the new one fences it
    rig.output.begin()
    assert len(rig.made) == 2
    assert rig.log[-2:] == ["init_transactions", "begin_transaction"]


def test_a_fatal_error_reported_by_error_cb_recreates_the_producer_on_next_use() -> None:
    rig = Rig()
    rig.output.begin()
    rig.producer.config["error_cb"](KafkaError(KafkaError._FATAL, "idempotence state lost", fatal=True))
    rig.send(b"a")
    assert len(rig.made) == 2
    assert rig.made[1].produced == [("default.event.a", b"a")]


def test_a_failed_begin_or_init_is_transient() -> None:
    rig = Rig()
    rig.output.producer()
    rig.producer.fail["begin_transaction"] = kafka_error(KafkaError._STATE)
    with pytest.raises(TransientError, match="begin"):
        rig.output.begin()
    assert rig.output.recreated == 1
    rig.fail_next["init_transactions"] = kafka_error(KafkaError._TIMED_OUT)
    with pytest.raises(TransientError, match="transactions"):
        rig.output.begin()
    rig.output.begin()  # the next attempt makes a producer again
    assert rig.log[-2:] == ["init_transactions", "begin_transaction"]
    assert len(rig.made) == 3


def test_send_retries_a_full_queue_and_hands_back_records_refused_before_sending() -> None:
    rig = Rig()
    rig.output.begin()
    rig.producer.fail["produce"] = BufferError()
    assert rig.send(b"a") == []
    assert rig.producer.produced == [("default.event.a", b"a")]
    rig.producer.fail["produce"] = kafka_error(KafkaError.MSG_SIZE_TOO_LARGE)
    refused = rig.send(b"b", b"huge")
    assert [index for index, _ in refused] == [0]


def test_a_transient_produce_error_is_not_a_refusal() -> None:
    rig = Rig()
    rig.output.begin()
    rig.producer.fail["produce"] = kafka_error(KafkaError._UNKNOWN_TOPIC)  # metadata briefly stale
    with pytest.raises(TransientError, match=r"default\.event\.a"):
        rig.send(b"a", b"b")
    rig.producer.fail["produce"] = kafka_error(KafkaError._FATAL, fatal=True)
    with pytest.raises(TransientError):
        rig.send(b"a")
    rig.send(b"a")  # a fatal error makes a new producer
    assert len(rig.made) == 2


def test_at_least_once_flushes_then_commits_the_group() -> None:
    rig = Rig("at_least_once")
    assert not rig.output.atomic
    assert "transactional.id" not in rig.output.config
    rig.output.begin()
    rig.send(b"a")
    assert rig.output.commit(OFFSETS, rig.group) == []
    assert rig.log == ["produce", "poll", "flush", "group.commit"]
    assert rig.group.commits == [OFFSETS]


def test_at_least_once_commits_nothing_while_records_are_unacknowledged() -> None:
    rig = Rig("at_least_once")
    rig.send(b"a", b"b")
    rig.producer.unflushed = 1
    with pytest.raises(TransientError, match="unacknowledged"):
        rig.output.commit(OFFSETS, rig.group)
    assert "group.commit" not in rig.log
    assert "purge" in rig.log
    rig.producer.unflushed = 0
    rig.send(b"c")
    rig.producer.undelivered[b"c"] = KafkaError(KafkaError._MSG_TIMED_OUT)
    with pytest.raises(TransientError, match="1 failed"):
        rig.output.commit(OFFSETS, rig.group)
    assert rig.group.commits == []


def test_at_least_once_hands_back_refusals_without_committing() -> None:
    rig = Rig("at_least_once")
    rig.send(b"a", b"huge")
    rig.producer.undelivered[b"huge"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    refused = rig.output.commit(OFFSETS, rig.group)
    assert [r.value for r in refused] == [b"huge"]
    assert rig.group.commits == []
    assert rig.output.commit(OFFSETS, rig.group) == []  # the next round commits
    assert rig.group.commits == [OFFSETS]


def test_at_least_once_swallows_and_counts_a_failed_offset_commit() -> None:
    rig = Rig("at_least_once")
    rig.send(b"a")
    rig.group.fail = TransientError("not the coordinator")
    assert rig.output.commit(OFFSETS, rig.group) == []
    assert rig.output.commit_failures == 1


class _Partition:
    def __init__(self, leader: int) -> None:
        self.leader, self.error = leader, None


class _Topic:
    def __init__(self, *leaders: int) -> None:
        self.error = None
        self.partitions = {i: _Partition(leader) for i, leader in enumerate(leaders)}


class _Metadata:
    def __init__(self, topics: dict[str, _Topic]) -> None:
        self.topics = topics


def test_a_topic_is_ready_once_every_partition_has_a_leader() -> None:
    rig = Rig()
    assert not rig.output.topic_ready("t")  # no producer yet: nothing known
    rig.output.producer()
    rig.producer.metadata = _Metadata({"t": _Topic(1, -1)})
    assert not rig.output.topic_ready("t")
    rig.producer.metadata = _Metadata({})
    assert not rig.output.topic_ready("t")
    rig.producer.metadata = _Metadata({"t": _Topic(1, 2)})
    assert rig.output.topic_ready("t")


def test_the_router_partitions_like_the_event_producer_so_a_user_keeps_their_partition() -> None:
    """Input and outputs partitioned alike (same partition counts): each output partition is fed by
    one input partition, in order — a backlog cannot put a user's events behind later ones."""
    settings = isolated_settings(lanes=["a"])
    assert router_producer_config(settings, "a")["partitioner"] == USER_PARTITIONER == "murmur2_random"
