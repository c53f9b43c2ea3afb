"""CollectorClient against a scripted local HTTP server (the edge under test is the HTTP exchange)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from connectors.collector_client import CollectorClient, CollectorError
from connectors.collector_retry import RetryPolicy, parse_retry_after
from tests.collector_support import DROP, FakeCollector


@pytest.fixture
def fake() -> Iterator[FakeCollector]:
    server = FakeCollector()
    yield server
    server.close()


class RecordingSleep:
    """Records the backoff delays instead of sleeping them (the retries themselves are real requests)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event_name": "app_open", "user_id": f"u{i}", "seq": i} for i in range(start, start + count)]


def client(fake: FakeCollector, **options: Any) -> CollectorClient:
    options.setdefault("linger_s", 3600.0)
    return CollectorClient(fake.url, "secret-key", "web", rng=random.Random(7), **options)


def test_batches_by_size_gzip_auth_lane_and_event_ids(fake: FakeCollector) -> None:
    with client(fake, batch_size=4) as sender:
        sender.send(events(10))
        fake.wait_for_requests(2)  # two full batches go without a flush
        sender.flush()
    received = fake.wait_for_requests(3)
    assert [len(r.events) for r in received] == [4, 4, 2]
    first = received[0]
    assert first.path == "/v1/events"
    assert first.query == {"lane": ["web"]}
    assert first.headers["Authorization"] == "Bearer secret-key"
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Content-Type"] == "application/json"
    sent = [e for r in received for e in r.events]
    assert [e["seq"] for e in sent] == list(range(10))
    assert len({e["event_id"] for e in sent}) == 10
    assert sender.accepted == 10


def test_a_caller_event_id_is_kept(fake: FakeCollector) -> None:
    with client(fake) as sender:
        sender.send([{"event_name": "x", "user_id": "u", "event_id": "given-id"}])
    assert fake.event_ids_answered_ok() == ["given-id"]


def test_linger_sends_a_partial_batch_without_flush(fake: FakeCollector) -> None:
    sender = client(fake, batch_size=100, linger_s=0.05)
    sender.send(events(3))
    received = fake.wait_for_requests(1)
    assert len(received[0].events) == 3
    sender.close()


def test_retries_429_and_503_honouring_retry_after_with_the_same_event_ids(fake: FakeCollector) -> None:
    fake.script.extend([(429, {"Retry-After": "2"}, {"error": "busy"}), (503, {"Retry-After": "1"}, {})])
    sleep = RecordingSleep()
    with client(fake, sleep=sleep) as sender:
        sender.send(events(5))
    received = fake.wait_for_requests(3)
    assert [r.answered for r in received] == [429, 503, 200]
    ids = [[e["event_id"] for e in r.events] for r in received]
    assert ids[0] == ids[1] == ids[2]
    assert sleep.delays[0] >= 2.0
    assert sleep.delays[1] >= 1.0
    assert sender.retries == 2
    assert sender.accepted == 5


def test_backoff_grows_exponentially_within_the_cap() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0)
    rng = random.Random(1)
    ceilings = [min(1.0, 0.1 * 2**attempt) for attempt in range(8)]
    for attempt, ceiling in enumerate(ceilings):
        samples = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # jitter spans the window, not a fixed delay
    assert policy.delay(5, 3.0, rng) >= 3.0


def test_dropped_connections_are_retried_and_counted_as_ambiguous(fake: FakeCollector) -> None:
    fake.script.extend([DROP, DROP])
    with client(fake, sleep=RecordingSleep()) as sender:
        sender.send(events(3))
    received = fake.wait_for_requests(3)
    assert [r.answered for r in received] == [None, None, 200]
    assert len({tuple(e["event_id"] for e in r.events) for r in received}) == 1
    assert sender.ambiguous_retries == 2


def test_gives_up_after_the_delivery_timeout_and_hands_the_events_back() -> None:
    fake = FakeCollector()
    url = fake.url
    fake.close()  # nothing listens: every attempt is refused
    sleep = RecordingSleep()
    sender = CollectorClient(
        url, "k", "web", linger_s=3600, sleep=sleep, retry=RetryPolicy(base_s=0.5, delivery_timeout_s=1.0)
    )
    sender.send(events(2))
    with pytest.raises(CollectorError, match="2 events in 1 batches") as raised:
        sender.flush()
    assert [e["seq"] for e in raised.value.failures[0].events] == [0, 1]
    assert raised.value.failures[0].status is None
    assert sender.ambiguous_retries == 0  # refused: the collector never saw the batch
    sender.close()  # the failure was handed over once


def test_after_a_batch_gave_up_the_next_get_one_attempt_until_the_collector_answers(
    fake: FakeCollector,
) -> None:
    busy = (503, {"Retry-After": "5"}, {"error": "broker away"})  # 5 s > the 1 s delivery timeout
    fake.script.extend([busy, busy, (200, {}, None), (503, {"Retry-After": "0"}, {}), (200, {}, None)])
    retry = RetryPolicy(base_s=0.1, delivery_timeout_s=1.0)
    sender = client(fake, batch_size=2, retry=retry, sleep=RecordingSleep())
    sender.send(events(8))
    with pytest.raises(CollectorError, match="4 events in 2 batches") as raised:
        sender.flush()
    assert [[e["seq"] for e in f.events] for f in raised.value.failures] == [[0, 1], [2, 3]]
    received = fake.wait_for_requests(5)
    assert [r.answered for r in received] == [503, 503, 200, 503, 200]  # batch 2 had one attempt
    assert [[e["seq"] for e in r.events] for r in received][2:] == [[4, 5], [6, 7], [6, 7]]
    sender.close()


def test_bad_key_fails_without_retrying(fake: FakeCollector) -> None:
    fake.script.append((401, {}, {"error": "bad key"}))
    sender = client(fake, sleep=RecordingSleep())
    sender.send(events(2))
    with pytest.raises(CollectorError, match="HTTP 401: bad key"):
        sender.flush()
    assert len(fake.wait_for_requests(1)) == 1
    sender.close()


def test_rejected_events_are_reported_by_event_id_and_field(fake: FakeCollector) -> None:
    partial = {"accepted": 2, "rejected": [{"index": 1, "field": "user_id", "error": "absent"}]}
    everything = {"accepted": 0, "rejected": [{"index": 0, "field": "event_name", "error": "empty"}]}
    fake.script.extend([(200, {}, partial), (400, {}, everything)])
    with client(fake, batch_size=3) as sender:
        sender.send(events(3))
        sender.flush()
        sender.send([{"event_name": "", "user_id": "u", "event_id": "bad-one"}])
    batch = fake.wait_for_requests(2)[0].events
    assert [(r.event_id, r.field) for r in sender.rejected] == [
        (batch[1]["event_id"], "user_id"),
        ("bad-one", "event_name"),
    ]
    assert sender.accepted == 2


def test_a_too_large_batch_is_split_until_each_part_fits(fake: FakeCollector) -> None:
    fake.script.extend([(413, {}, {"error": "too large"}), (413, {}, {"error": "too large"})])
    with client(fake, batch_size=4) as sender:
        sender.send(events(4))
    received = fake.wait_for_requests(5)
    assert [len(r.events) for r in received] == [4, 2, 1, 1, 2]
    assert sorted(fake.event_ids_answered_ok()) == sorted(e["event_id"] for e in received[0].events)


def test_send_blocks_while_the_buffer_is_full_and_loses_nothing(fake: FakeCollector) -> None:
    with client(fake, batch_size=10, max_buffered=20, linger_s=0.01) as sender:
        for chunk in range(10):
            sender.send(events(25, start=chunk * 25))
    ids = fake.event_ids_answered_ok()
    assert len(ids) == len(set(ids)) == 250


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=5), usegmt=True), now=now) == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
