"""Realtime on the real broker: exact closed windows, late events, /metrics, restore after kill -9.

Traffic is produced straight to the lane's common topic (keyed by user id) with controlled
server timestamps, so the tests do not depend on the router. The truth is computed here from the
very events produced.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.settings import Settings
from tests.support import TEST_API_TOKEN, WorkerProcess, wait_until

pytestmark = pytest.mark.integration
MIN = 60_000
PLATFORMS = ("android", "ios", "web")


class RealtimeWorker(WorkerProcess):
    """A realtime-only worker whose group notices a kill -9 within seconds, not faust's 60 s."""

    def __init__(self, settings: Settings, session_timeout_s: int = 8) -> None:
        super().__init__(
            settings,
            roles="realtime",
            extra_env={"HIGHWAY_FAUST_BROKER_SESSION_TIMEOUT": str(session_timeout_s)},
        )


def envelope(user: str, platform: str, ts: int, name: str = "ping") -> dict[str, Any]:
    return {
        "event_name": name,
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "session_id": f"s-{user}",
        "lane": "x",
        "platform": platform,
        "app_version": "1.0",
        "device_id": f"d-{user}",
        "client_ts": ts,
        "server_ts": ts,
    }


@dataclass
class Traffic:
    """Events produced so far and the truth derived from them."""

    base_ms: int
    users: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_platform: dict[tuple[int, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    events: int = 0

    def make(self, rng: random.Random, minute: int, count: int, population: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            n = rng.randint(1, population)
            user = str(n) if n % 2 else f"user-{n}"
            platform = PLATFORMS[n % 3] if rng.random() < 0.9 else rng.choice(PLATFORMS)
            ts = self.base_ms + minute * MIN + rng.randint(0, MIN - 1)
            out.append(self.event(user, platform, ts, f"ev{rng.randint(0, 5)}"))
        return out

    def event(self, user: str, platform: str, ts: int, name: str = "ping") -> dict[str, Any]:
        start = ts - ts % MIN
        self.users[start].add(user)
        self.by_platform[(start, platform)].add(user)
        self.events += 1
        return envelope(user, platform, ts, name)

    def push(self, minute: int, population: int) -> list[dict[str, Any]]:
        """One event per user at ``minute``: moves every partition's watermark there."""
        return [self.event(str(n), "web", self.base_ms + minute * MIN) for n in range(1, population + 1)]

    def expected(self, minute: int) -> tuple[int, dict[str, int]]:
        start = self.base_ms + minute * MIN
        platforms = {p: len(self.by_platform[(start, p)]) for p in PLATFORMS if self.by_platform[(start, p)]}
        return len(self.users[start]), platforms


def lane_settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(realtime_allowed_lateness_s=60, api_token=TEST_API_TOKEN)
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)], partitions=3)
    return settings


def produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    with EventProducer(settings) as producer:
        producer.produce_events(settings.common_topic(settings.lanes[0]), events)


def windows(
    worker: WorkerProcess, traffic: Traffic, minutes: range, by: str | None = None, window: str = "1m"
) -> dict[int, Any]:
    params = {
        "lane": worker.settings.lanes[0],
        "window": window,
        "from": str(traffic.base_ms + minutes.start * MIN),
        "to": str(traffic.base_ms + minutes.stop * MIN),
    }
    if by:
        params["by"] = by
    body = httpx.get(
        f"{worker.base_url}/api/v1/concurrency", params=params, headers=worker.auth_headers, timeout=5
    ).json()
    return {(row["window_start"] - traffic.base_ms) // MIN: row for row in body["windows"]}


def assert_exact(worker: WorkerProcess, traffic: Traffic, minutes: list[int]) -> None:
    """Wait until the minutes are complete cluster-wide, then compare them with the truth."""
    span = range(min(minutes), max(minutes) + 1)

    def complete() -> dict[int, Any] | None:
        try:
            rows = windows(worker, traffic, span)
        except httpx.HTTPError:
            return None
        done = all(m in rows and rows[m]["complete"] for m in minutes)
        return rows if done else None

    rows = wait_until(complete, 90, 0.5, f"windows {minutes} complete")
    for minute in minutes:
        total, platforms = traffic.expected(minute)
        counts = rows[minute]["counts"]
        assert counts["all"] == total, f"minute {minute}"
        assert counts["by"]["platform"] == platforms, f"minute {minute}"


def metric_samples(worker: WorkerProcess) -> list[Any]:
    text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def late_total(worker: WorkerProcess) -> float:
    lane = worker.settings.lanes[0]
    return sum(
        s.value
        for s in metric_samples(worker)
        if s.name == "highway_late_events_total" and s.labels.get("lane") == lane
    )


def test_closed_windows_exact_late_counted_metrics_parse(make_settings: Any) -> None:
    settings = lane_settings(make_settings)
    rng = random.Random(11)
    traffic = Traffic(base_ms=(int(time.time() * 1000) // MIN - 120) * MIN)
    population = 400
    with RealtimeWorker(settings) as worker:
        worker.wait_healthy()
        events = []
        for minute in range(4):
            batch = traffic.make(rng, minute, 1500, population)
            rng.shuffle(batch)  # out of order, within the allowance
            events += batch
        produce(settings, events + traffic.push(5, population))
        assert_exact(worker, traffic, [0, 1, 2, 3])

        # Later than the allowance: counted, not added.
        stragglers = [envelope(f"late-{n}", "ios", traffic.base_ms + MIN + n) for n in range(25)]
        before = windows(worker, traffic, range(4))
        produce(settings, stragglers)
        wait_until(lambda: late_total(worker) >= 25, 30, 0.3, "late events counted")
        assert late_total(worker) == 25
        assert windows(worker, traffic, range(4)) == before

        samples = metric_samples(worker)
        names = {s.name for s in samples}
        assert {"highway_concurrent_users", "highway_events_total", "highway_consumer_lag"} <= names
        closed = {
            s.labels["value"]: s.value
            for s in samples
            if s.name == "highway_concurrent_users"
            and s.labels["state"] == "closed"
            and s.labels["window"] == "1m"
            and s.labels["dimension"] == "platform"
        }
        start = next(
            s.value
            for s in samples
            if s.name == "highway_window_start_seconds" and s.labels["state"] == "closed"
        )
        assert int((start * 1000 - traffic.base_ms) // MIN) == 3
        assert closed == traffic.expected(3)[1]
        user = next(iter(traffic.users[traffic.base_ms + 5 * MIN]))
        found = httpx.get(
            f"{worker.base_url}/api/v1/users/{user}",
            params={"lane": settings.lanes[0]},
            headers=worker.auth_headers,
        ).json()
        assert found["owned_here"] is True
        assert found["last_seen_ms"] >= traffic.base_ms + 5 * MIN
        bad = httpx.get(
            f"{worker.base_url}/api/v1/concurrency",
            params={"from": "1e400"},
            headers=worker.auth_headers,
            timeout=5,
        )
        assert bad.status_code == 400
        assert "from='1e400' is not a finite number" in bad.json()["error"]

        # kill -9 and restart: the windows resume from the checkpoint, still exact.
        worker.kill()
        worker.start()
        worker.wait_healthy()
        events = [e for minute in range(6, 8) for e in traffic.make(rng, minute, 1000, population)]
        produce(settings, events + traffic.push(10, population))
        assert_exact(worker, traffic, [0, 1, 2, 3, 5, 6, 7])
