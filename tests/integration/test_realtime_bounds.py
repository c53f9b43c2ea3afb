"""Realtime bounded by design, on the real broker: hostile dimensions, a far-future clock, an idle partition.

Traffic goes straight to the lane's common topic (keyed by user id) with controlled server
timestamps; the truth is computed here from the very events produced, and every window checked is
compared with it exactly.

* Hostile dimensions: thousands of distinct 200-character ``app_version`` and ``platform`` values
  in one window. The worker stays up, every partition publishes the window, the overall distinct
  count is exact, each dimension holds the first ``realtime_dimension_top_n`` values per partition
  plus ``other`` — the kept values' counts and ``other``'s users and events are exact — and
  ``highway_realtime_folded_total`` counts every cut and fold.
* A far-future ``server_ts`` (year 2100) from every user, mixed into normal traffic: nothing later is
  late, the windows close exact, ``highway_realtime_future_events_total`` counts them, and a kill -9
  and restart (a replay from the checkpoints) does not bring a poisoned watermark back.
* An idle partition: after one event on every partition, live-stamped traffic only to partition 0
  (its users chosen by the producer's murmur2 partitioner) for a few windows; the other partitions'
  clocks follow the wall clock after ``realtime_idle_timeout_s``, so the last window closes within
  the timeout plus the lateness and a window (for alignment) of the last event, plus a margin, exact.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import murmur2  # the Java client's hash, as librdkafka's murmur2_random

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.settings import Settings
from tests.integration.test_realtime import (
    MIN,
    PLATFORMS,
    RealtimeWorker,
    Traffic,
    assert_exact,
    envelope,
    late_total,
    metric_samples,
    produce,
)
from tests.support import TEST_API_TOKEN, WorkerProcess, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 3
YEAR_2100_MS = 4_102_444_800_000


def lane_settings(make_settings: Any, **overrides: Any) -> Settings:
    settings: Settings = make_settings(topic_partitions=PARTITIONS, **overrides)
    KafkaAdmin(settings).ensure_topics([settings.common_topic(settings.lanes[0])], partitions=PARTITIONS)
    return settings


def counter(worker: WorkerProcess, name: str, **labels: str) -> float:
    """The sum of a counter's samples on the worker's lane matching ``labels``."""
    want = {"lane": worker.settings.lanes[0], **labels}
    return sum(
        s.value
        for s in metric_samples(worker)
        if s.name == name and all(s.labels.get(k) == v for k, v in want.items())
    )


def complete_rows(worker: WorkerProcess, path: str, params: dict[str, str], starts: list[int]) -> Any:
    """The API's rows of the windows ``starts`` (ms) once all of them are complete, else None."""
    try:
        body = httpx.get(
            f"{worker.base_url}{path}", params=params, headers=worker.auth_headers, timeout=5
        ).json()
    except httpx.HTTPError:
        return None
    rows = {row["window_start"]: row for row in body["windows"]}
    return rows if all(s in rows and rows[s]["complete"] for s in starts) else None


def now_ms() -> int:
    return int(time.time() * 1000)


def applied(worker: WorkerProcess) -> float:
    try:
        return counter(worker, "highway_events_total")
    except httpx.HTTPError:
        return 0.0


def applied_at_least(worker: WorkerProcess, events: int) -> Callable[[], bool]:
    return lambda: applied(worker) >= events


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def test_hostile_dimensions_capped_exact_and_counted(make_settings: Any) -> None:
    settings = lane_settings(make_settings, realtime_allowed_lateness_s=60)
    top_n, max_chars = settings.realtime_dimension_top_n, settings.realtime_max_dimension_chars
    rng = random.Random(7)
    base = (int(time.time() * 1000) // MIN - 120) * MIN
    population, count = 600, 3000
    events: list[dict[str, Any]] = []
    users_of_value: dict[str, dict[str, set[str]]] = {
        "app_version": defaultdict(set),
        "platform": defaultdict(set),
    }
    for i in range(count):
        n = rng.randint(1, population)
        user = str(n) if n % 2 else f"user-{n}"
        event = envelope(user, "?", base + rng.randint(0, MIN - 1), f"ev{i % 5}")
        # Distinct within the length limit, so every event brings a value of its own.
        event["app_version"] = f"{i:05d}-" + "v" * 200
        event["platform"] = f"p{i:05d}-" + "\u00e9" * 150
        for dim in users_of_value:
            users_of_value[dim][event[dim][:max_chars]].add(user)
        events.append(event)
    truth_users = {e["user_id"] for e in events}
    push = [envelope(str(n), "web", base + 2 * MIN) for n in range(1, population + 1)]  # closes minute 0

    with RealtimeWorker(settings) as worker:
        worker.wait_healthy()
        produce(settings, events + push)
        params = {"lane": settings.lanes[0], "from": str(base), "to": str(base + MIN)}
        users = wait_until(
            lambda: complete_rows(worker, "/api/v1/concurrency", {**params, "window": "1m"}, [base]),
            60,
            0.5,
            "the hostile window complete",
        )[base]
        counts = complete_rows(worker, "/api/v1/counts", {**params, "window": "1m"}, [base])[base]
        assert worker.alive(), "the worker survived the hostile values"
        assert users["partitions_reported"] == list(range(PARTITIONS)), "every partition published"
        assert users["counts"]["all"] == len(truth_users)
        assert counts["counts"]["all"] == count

        for dim in ("app_version", "platform"):
            by_users = users["counts"]["by"][dim]
            by_events = counts["counts"]["by"][dim]
            named = {v: c for v, c in by_users.items() if v != "other"}
            # Each partition keeps its first top_n values (it has far more): top_n per partition.
            assert len(named) == PARTITIONS * top_n, dim
            assert set(by_events) == set(by_users), dim
            for value, users_count in named.items():
                assert len(value) == max_chars, (dim, value)
                assert value in users_of_value[dim], (dim, value)
                assert users_count == len(users_of_value[dim][value]) == 1, (dim, value)
                assert by_events[value] == 1, (dim, value)
            # A user lives in one partition, so the folded users summed over partitions are exactly
            # the distinct users of the events whose value was not kept.
            folded_users = set[str]().union(*(u for v, u in users_of_value[dim].items() if v not in named))
            assert by_users["other"] == len(folded_users), dim
            assert by_events["other"] == count - len(named), dim
            assert sum(by_events.values()) == count, dim

            lane = settings.lanes[0]
            length = counter(worker, "highway_realtime_folded_total", dimension=dim, reason="length")
            cap = counter(worker, "highway_realtime_folded_total", dimension=dim, reason="cap")
            assert (length, cap) == (count, count - len(named)), (lane, dim)

        closed_values = [
            s.labels["value"]
            for s in metric_samples(worker)
            if s.name == "highway_concurrent_users"
            and s.labels["state"] == "closed"
            and s.labels["window"] == "1m"
            and s.labels["dimension"] == "app_version"
        ]
        assert "other" in closed_values
        assert len(closed_values) <= top_n + 1
        assert worker.alive()


def test_far_future_event_neither_applied_nor_poisoning_the_watermark(make_settings: Any) -> None:
    settings = lane_settings(make_settings, realtime_allowed_lateness_s=60)
    rng = random.Random(2100)
    traffic = Traffic(base_ms=(int(time.time() * 1000) // MIN - 120) * MIN)
    population = 300
    # Every user (so every partition) sends one event stamped in 2100 among its normal ones.
    poison = [
        envelope(str(n) if n % 2 else f"user-{n}", "ios", YEAR_2100_MS + n) for n in range(1, population + 1)
    ]
    events = []
    for minute in range(3):
        batch = traffic.make(rng, minute, 800, population)
        rng.shuffle(batch)
        events += batch
    for event in poison:  # in the middle of minutes 0 and 1
        events.insert(rng.randint(100, 1500), event)

    with RealtimeWorker(settings) as worker:
        worker.wait_healthy()
        produce(settings, events + traffic.push(4, population))
        assert_exact(worker, traffic, [0, 1, 2])
        assert late_total(worker) == 0, "events after the far-future ones are not late"
        assert counter(worker, "highway_realtime_future_events_total") == population
        closed_start = next(
            s.value
            for s in metric_samples(worker)
            if s.name == "highway_window_start_seconds" and s.labels["state"] == "closed"
        )
        assert closed_start * 1000 == traffic.base_ms + 2 * MIN, "the closed gauge follows the real traffic"

        # A restart replays from the published checkpoints: they must not carry a 2100 watermark.
        worker.kill()
        worker.start()
        worker.wait_healthy()
        later = [e for minute in (5, 6) for e in traffic.make(rng, minute, 600, population)]
        produce(settings, later + traffic.push(8, population))
        assert_exact(worker, traffic, [0, 1, 2, 4, 5, 6])
        assert late_total(worker) == 0, "nothing late after the restart either"
        future = httpx.get(
            f"{worker.base_url}/api/v1/concurrency",
            params={
                "lane": settings.lanes[0],
                "from": str(YEAR_2100_MS - MIN),
                "to": str(YEAR_2100_MS + MIN),
            },
            headers=worker.auth_headers,
            timeout=5,
        ).json()
        assert future["windows"] == [], "no window of 2100 was opened"


def test_idle_partitions_close_windows_by_wall_clock_exact(make_settings: Any) -> None:
    window_s, lateness_s, idle_s = 5, 1, 3
    settings = lane_settings(
        make_settings,
        api_token=TEST_API_TOKEN,
        realtime_window_s=window_s,
        realtime_sliding_window_s=2 * window_s,
        realtime_allowed_lateness_s=lateness_s,
        realtime_idle_timeout_s=idle_s,
    )
    window_ms = window_s * 1000
    keys: dict[int, list[str]] = defaultdict(list)
    n = 0
    while len(keys[0]) < 60 or any(not keys[p] for p in range(PARTITIONS)):
        n += 1
        keys[partition_of(str(n))].append(str(n))
    truth: dict[int, set[str]] = defaultdict(set)
    by_platform: dict[tuple[int, str], set[str]] = defaultdict(set)

    def event(user: str, ts: int) -> dict[str, Any]:
        platform = PLATFORMS[int(user) % 3]
        truth[ts - ts % window_ms].add(user)
        by_platform[(ts - ts % window_ms, platform)].add(user)
        return envelope(user, platform, ts)

    topic = settings.common_topic(settings.lanes[0])
    with RealtimeWorker(settings) as worker:
        worker.wait_healthy()
        # Every partition gets a clock to run on; then, for a few windows, only partition 0 has
        # traffic, stamped live as the router stamps it: the others go idle meanwhile.
        rng = random.Random(3)
        traffic = [event(keys[p][0], now_ms()) for p in range(PARTITIONS)]
        with EventProducer(settings) as producer:
            producer.produce_events(topic, traffic)
            producer.flush()
            live_until = time.monotonic() + 2.5 * window_s
            while time.monotonic() < live_until:
                batch = [event(rng.choice(keys[0]), now_ms()) for _ in range(30)]
                producer.produce_events(topic, batch)
                producer.flush()
                traffic += batch
                sent = len(traffic)
                # Paced by the worker: the next batch once this one is applied.
                wait_until(applied_at_least(worker, sent), 10, 0.05, f"{sent} events applied")
        last_sent = time.monotonic()

        def found() -> dict[str, Any] | None:
            url = f"{worker.base_url}/api/v1/users/{traffic[-1]['user_id']}"
            body: dict[str, Any] = httpx.get(
                url, params={"lane": settings.lanes[0]}, headers=worker.auth_headers, timeout=5
            ).json()
            return body if body["owned_here"] else None

        assert wait_until(found, 10, 0.1, "the last user applied")["partition"] == 0, (
            "keys chosen for partition 0"
        )
        starts = sorted(truth)
        params = {
            "lane": settings.lanes[0],
            "window": f"{window_s}s",
            "from": str(starts[0]),
            "to": str(starts[-1] + window_ms),
        }
        # The idle partitions' clocks run the idle timeout behind the wall clock: the last window
        # closes once they pass its end plus the lateness (at most a window after the last event).
        bound_s = idle_s + window_s + lateness_s + 10
        rows = wait_until(
            lambda: complete_rows(worker, "/api/v1/concurrency", params, starts),
            bound_s,
            0.25,
            f"every window closed within {bound_s} s of the last event",
        )
        print(f"windows closed {time.monotonic() - last_sent:.1f} s after the last event")
        for start in starts:
            counts = rows[start]["counts"]
            assert counts["all"] == len(truth[start]), start
            platforms = {p: len(by_platform[(start, p)]) for p in PLATFORMS if by_platform[(start, p)]}
            assert counts["by"]["platform"] == platforms, start
        assert late_total(worker) == 0
        closed_start = wait_until(
            lambda: next(
                (
                    s.value
                    for s in metric_samples(worker)
                    if s.name == "highway_window_start_seconds"
                    and s.labels["state"] == "closed"
                    and s.value * 1000 >= starts[-1]
                ),
                None,
            ),
            10,
            0.25,
            "the closed gauge at the last window",
        )
        assert closed_start * 1000 >= starts[-1]
