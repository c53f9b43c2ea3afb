"""The router's commit path (``core.routing.commit``) driven with fakes that fail at every step.

Each test asserts exactly which offsets were committed: in order on the happy path, and nothing
after a failure — not by a later batch, not on a revoke, not on a stop. Also the bookkeeping of
``connectors.router_producer.PendingDelivery``; ``test_routing_service`` runs the same path through
the consumer service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
import pytest
from confluent_kafka import KafkaError

from connectors.router_producer import PendingDelivery
from core.envelope import parse_json_event
from core.errors import TerminalError, TransientError
from core.routing.classify import OutRecord, SourceRecord
from core.routing.commit import PRODUCE_REFUSED, TOPIC_CREATE_FAILED, BatchStats, LaneCommitPath
from tests.conftest import isolated_settings

LANE = "default"
SOURCE = "default.events.all"
NOW_MS = 1_790_000_000_000
Offsets = dict[tuple[str, int], int]


class FakeAdmin:
    def __init__(self, known: Iterable[str] = (), refuse: Iterable[str] = (), away: bool = False) -> None:
        self.topics = set(known)
        self.refuse = set(refuse)  # names the broker refuses for good
        self.away = away  # the broker does not answer at all

    def ensure_topics(self, names: Iterable[str]) -> list[str]:
        wanted = sorted(set(names))
        if self.away or self.refuse & set(wanted):
            raise TransientError(f"could not create {wanted}")
        created = [name for name in wanted if name not in self.topics]
        self.topics.update(created)
        return created

    def list_topics(self, pattern: str | None = None) -> list[str]:
        if self.away:
            raise TransientError("broker away")
        return sorted(self.topics)


@dataclass
class FakeRefusal:
    index: int
    error: str


@dataclass
class FakePending:
    records: list[OutRecord]
    acked: bool = False

    @property
    def done(self) -> bool:
        return self.acked


@dataclass
class FakeProducer:
    """Records are acknowledged by the test (``ack``) or on ``complete``; failures on request."""

    auto_ack: bool = True
    fail_send_at: int | None = None  # the n-th send (0-based) raises
    undeliverable: set[int] = field(default_factory=set)  # sends whose delivery keeps failing
    refuse_topics: set[str] = field(default_factory=set)  # records Kafka refuses for good
    sends: list[FakePending] = field(default_factory=list)
    delivered: list[OutRecord] = field(default_factory=list)
    waited_for: list[str] = field(default_factory=list)

    def send(self, records: Sequence[OutRecord]) -> FakePending:
        if self.fail_send_at == len(self.sends):
            raise TransientError("local queue broken")
        pending = FakePending(list(records), acked=self.auto_ack)
        self.sends.append(pending)
        return pending

    def wait_for_topics(self, topics: Sequence[str]) -> None:
        self.waited_for.extend(topics)

    def complete(self, records: Sequence[OutRecord], pending: FakePending) -> list[FakeRefusal]:
        if self.sends.index(pending) in self.undeliverable:
            raise TransientError("records undelivered after 5 attempts")
        pending.acked = True
        refused = [
            FakeRefusal(i, "MSG_SIZE_TOO_LARGE")
            for i, r in enumerate(records)
            if r.topic in self.refuse_topics
        ]
        self.delivered.extend(r for i, r in enumerate(records) if i not in {x.index for x in refused})
        return refused

    def ack(self, send_index: int) -> None:
        self.sends[send_index].acked = True


@dataclass
class FakeOffsets:
    fail_at: int | None = None  # the n-th commit (0-based) raises
    attempts: int = 0
    committed: list[Offsets] = field(default_factory=list)

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.attempts += 1
        if self.fail_at == self.attempts - 1:
            raise TransientError("commit refused: not the group's coordinator")
        self.committed.append(dict(offsets))


def event(name: str, index: int = 0) -> bytes:
    return orjson.dumps(
        {
            "event_name": name,
            "event_id": f"00000000-0000-4000-8000-{index:012d}",
            "user_id": f"u{index}",
            "session_id": "s",
            "lane": LANE,
            "platform": "web",
            "app_version": "1.0.0",
            "device_id": "d",
            "client_ts": NOW_MS,
            "server_ts": NOW_MS,
            "properties": {},
        }
    )


def batch(partition: int, first: int, count: int = 3, name: str = "contest_join") -> list[SourceRecord]:
    return [SourceRecord(b"k", event(name, first + i), partition, first + i, NOW_MS) for i in range(count)]


def make_path(
    admin: FakeAdmin | None = None, producer: FakeProducer | None = None, max_in_flight: int = 4
) -> tuple[LaneCommitPath[FakePending], FakeProducer, list[BatchStats]]:
    stats: list[BatchStats] = []
    producer = producer or FakeProducer()
    path = LaneCommitPath(
        isolated_settings(),
        LANE,
        admin or FakeAdmin(known=["default.event.contest_join"]),
        producer,
        parse_json_event,
        max_in_flight=max_in_flight,
        on_settled=stats.append,
        clock=lambda: NOW_MS / 1000,
    )
    return path, producer, stats


# --- the happy path ---------------------------------------------------------------------------


def test_acknowledged_batches_are_committed_in_order_with_every_derived_record_sent() -> None:
    path, producer, stats = make_path()
    offsets = FakeOffsets()
    path.route(batch(0, 10), offsets)
    path.route(batch(1, 0) + batch(0, 13, 2), offsets)
    bad = [SourceRecord(b"k", b"not json", 2, 7, NOW_MS)]
    path.route(bad, offsets)
    assert offsets.committed == [{(SOURCE, 0): 13}, {(SOURCE, 1): 3, (SOURCE, 0): 15}, {(SOURCE, 2): 8}]
    assert [len(p.records) for p in producer.sends] == [6, 10, 1]  # routed + projection, or a dead letter
    assert producer.sends[2].records[0].topic == "default.events.dlq"
    assert [(s.events, s.routed, s.dead) for s in stats] == [(3, 3, 0), (5, 5, 0), (1, 0, 1)]
    assert stats[2].reasons == {"malformed_json": 1}
    assert not path.in_flight


def test_in_flight_batches_are_bounded_and_committed_oldest_first() -> None:
    path, _, _ = make_path(producer=FakeProducer(auto_ack=False), max_in_flight=2)
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    assert offsets.committed == []
    path.route(batch(0, 3), offsets)  # two in flight: the oldest is settled before reading more
    assert offsets.committed == [{(SOURCE, 0): 3}]
    assert len(path.in_flight) == 1
    path.route(batch(0, 6), offsets)
    assert offsets.committed == [{(SOURCE, 0): 3}, {(SOURCE, 0): 6}]
    path.drain(offsets)  # a revoke or a stop
    assert offsets.committed == [{(SOURCE, 0): 3}, {(SOURCE, 0): 6}, {(SOURCE, 0): 9}]


def test_a_younger_batch_acknowledged_first_waits_for_the_oldest() -> None:
    path, producer, _ = make_path(producer=FakeProducer(auto_ack=False), max_in_flight=4)
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    path.route(batch(1, 0), offsets)
    producer.ack(1)
    path.route([], offsets)  # an idle poll
    assert offsets.committed == []
    producer.ack(0)
    path.route([], offsets)
    assert offsets.committed == [{(SOURCE, 0): 3}, {(SOURCE, 1): 3}]


def test_new_types_get_their_topics_before_their_records_are_sent() -> None:
    admin = FakeAdmin()
    path, producer, stats = make_path(admin=admin)
    offsets = FakeOffsets()
    path.route(batch(0, 0, name="brand_new"), offsets)
    assert "default.event.brand_new" in admin.topics
    assert producer.waited_for == ["default.event.brand_new"]
    assert offsets.committed == [{(SOURCE, 0): 3}]
    assert stats[0].new_topics == 1


def test_lost_partitions_drop_the_in_flight_batches_uncommitted() -> None:
    path, _, _ = make_path(producer=FakeProducer(auto_ack=False))
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    path.discard()
    path.drain(offsets)
    assert offsets.committed == []


# --- refusals for good: dead-lettered, then committed ------------------------------------------


def test_a_topic_the_broker_refuses_for_good_dead_letters_its_events() -> None:
    admin = FakeAdmin(known=["default.event.contest_join"], refuse=["default.event.doomed"])
    path, producer, stats = make_path(admin=admin)
    offsets = FakeOffsets()
    path.route(batch(0, 0, count=2, name="doomed") + batch(0, 2, count=1), offsets)
    assert offsets.committed == [{(SOURCE, 0): 3}]
    topics = [r.topic for r in producer.sends[0].records]
    assert topics.count("default.events.dlq") == 2
    assert "default.event.doomed" not in topics
    assert stats[0].reasons == {TOPIC_CREATE_FAILED: 2}
    assert "default.event.doomed" not in path.gate.known


def test_records_kafka_refuses_for_good_are_dead_lettered_before_the_commit() -> None:
    producer = FakeProducer(refuse_topics={"default.event.contest_join"})
    path, _, stats = make_path(producer=producer)
    offsets = FakeOffsets()
    path.route(batch(0, 0, count=2), offsets)
    assert offsets.committed == [{(SOURCE, 0): 2}]
    letters = [r for r in producer.delivered if r.topic == "default.events.dlq"]
    assert [dict(r.headers)["reason"] for r in letters] == [PRODUCE_REFUSED.encode()] * 2
    assert stats[0].reasons == {PRODUCE_REFUSED: 2}
    assert (stats[0].routed, stats[0].dead) == (0, 2)


def test_a_dead_letter_topic_refusing_its_letters_stops_without_committing() -> None:
    producer = FakeProducer(refuse_topics={"default.event.contest_join", "default.events.dlq"})
    path, _, _ = make_path(producer=producer)
    offsets = FakeOffsets()
    with pytest.raises(TerminalError, match="dead-letter topic"):
        path.route(batch(0, 0), offsets)
    path.drain(offsets)
    assert offsets.committed == []


# --- failures: nothing is committed after them -------------------------------------------------


def test_a_broker_that_does_not_answer_topic_creation_stops_without_committing() -> None:
    admin = FakeAdmin(known=["default.event.contest_join"])
    path, _, _ = make_path(admin=admin, producer=FakeProducer(auto_ack=False))
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)  # in flight, not yet acknowledged
    admin.away = True
    with pytest.raises(TransientError, match="broker away"):
        path.route(batch(0, 3, name="brand_new"), offsets)
    path.drain(offsets)  # the revoke when the consumer closes
    assert offsets.committed == []
    with pytest.raises(TerminalError, match="failed earlier"):
        path.route(batch(0, 6), offsets)


def test_a_failed_send_stops_without_committing_the_batches_before_it() -> None:
    path, _, _ = make_path(producer=FakeProducer(auto_ack=False, fail_send_at=1))
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    with pytest.raises(TransientError, match="local queue"):
        path.route(batch(0, 3), offsets)
    path.drain(offsets)
    assert offsets.committed == []


def test_a_delivery_failure_commits_nothing_after_it_on_the_next_batch_on_revoke_or_on_stop() -> None:
    """The silent-loss path: batch 1 fails while batch 2 was acknowledged; 2 must never be committed."""
    producer = FakeProducer(auto_ack=False, undeliverable={1})
    path, _, _ = make_path(producer=producer, max_in_flight=3)
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    producer.ack(0)
    path.route(batch(0, 3), offsets)  # batch 0 committed; batch 1 in flight
    path.route(batch(0, 6), offsets)
    producer.ack(2)
    assert offsets.committed == [{(SOURCE, 0): 3}]
    with pytest.raises(TransientError, match="undelivered"):
        path.route(batch(0, 9), offsets)  # three in flight: settles batch 1, which fails
    path.drain(offsets)  # revoke
    path.drain(offsets)  # stop
    with pytest.raises(TerminalError):
        path.route(batch(0, 12), offsets)
    assert offsets.committed == [{(SOURCE, 0): 3}]
    assert len(path.in_flight) == 3  # the failed batch stays at the head: it is never skipped


def test_a_delivery_failure_during_the_revoke_drain_stops_the_drain() -> None:
    path, _, _ = make_path(producer=FakeProducer(auto_ack=False, undeliverable={0}))
    offsets = FakeOffsets()
    path.route(batch(0, 0), offsets)
    path.route(batch(1, 0), offsets)
    with pytest.raises(TransientError):
        path.drain(offsets)
    path.drain(offsets)
    assert offsets.committed == []


def test_a_failed_commit_is_covered_by_the_next_one_and_never_stops_the_router() -> None:
    """A commit refused mid-rebalance loses nothing: the batch is durable and commits are cumulative."""
    path, _, _ = make_path()
    offsets = FakeOffsets(fail_at=1)
    path.route(batch(0, 0), offsets)
    path.route(batch(0, 3), offsets)  # its commit fails: logged, counted, not raised
    path.route(batch(0, 6), offsets)
    path.drain(offsets)
    assert offsets.committed == [{(SOURCE, 0): 3}, {(SOURCE, 0): 9}]
    assert offsets.attempts == 3
    assert path.commit_failures == 1
    assert path.failure is None
    assert not path.in_flight


# --- PendingDelivery bookkeeping (connectors.router_producer) ----------------------------------


def test_pending_delivery_completes_after_every_report_and_sorts_failures() -> None:
    pending = PendingDelivery(5)
    pending.settle(0, None)
    pending.settle(1, KafkaError(KafkaError._MSG_TIMED_OUT))
    pending.settle(2, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    pending.settle(3, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert not pending.done
    pending.settle(4, KafkaError(KafkaError.UNKNOWN_TOPIC_ID))  # not "retriable" to librdkafka, yet heals
    assert pending.done
    assert pending.wait(0)
    assert sorted(index for index, _ in pending.failed) == [1, 3, 4]
    assert [refused.index for refused in pending.refused] == [2]


def test_an_empty_pending_delivery_is_done() -> None:
    assert PendingDelivery(0).done
