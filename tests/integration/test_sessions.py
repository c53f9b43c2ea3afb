"""Simulator traffic through the router and the sessions stage: the lake's sessions table equals the
simulator's own sessions — count, events, start and end of each — also across a kill -9.

The simulator gives every event its session (``<user>-s<n>``); the truth is computed from the same
seeded events with the documented event-time rule (``client_ts`` unless further than
``sessions_clock_skew_s`` from ``server_ts``). Traffic is live (paced on its timestamps), as in
production; the gap is well above any pause inside a simulated session at this rate, so the only
way to a different table is a stage that loses, splits or repeats a session.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest

from connectors.kafka_admin import KafkaAdmin
from connectors.local.process import free_ports
from connectors.producer import EventProducer
from connectors.sessions_lake import IcebergSessionTables
from connectors.simulator_feed import produce_simulated_traffic
from core.envelope import STRING_FIELDS
from core.sessions.parse import event_time
from core.settings import Settings
from core.sim import SimConfig
from core.sim.simulator import MatchDaySimulator
from tests.support import TEST_API_TOKEN, WorkerProcess, committed_counts, wait_until

pytestmark = pytest.mark.integration
PROBE_USER = "probe-user"
SESSION_SETTINGS: dict[str, Any] = {
    "sessions_gap_s": 8,
    # The router, catching up after its start, interleaves its input partitions: events a few
    # seconds behind the watermark are counted as late (still in their session); not checked here.
    "sessions_allowed_lateness_s": 5,
    "sessions_clock_skew_s": 2,
    "sessions_idle_timeout_s": 1,
    "sessions_flush_age_s": 1.0,
}


def sim_config(lane: str, seed: int) -> SimConfig:
    return SimConfig(
        start_ms=int(time.time() * 1000),
        seed=seed,
        users=500,
        event_types=20,
        events=5_000,
        base_rate=200.0,  # 25 simulated (= wall, paced) seconds; ~2 events/s per open session
        surge_factor=1.0,
        mean_session_events=12.0,  # sessions of ~6 s: many close, and are committed, while traffic runs
        lane=lane,
    )


def truth_sessions(config: SimConfig, skew_s: int) -> dict[str, tuple[int, int, int]]:
    """session_id → (events, start, end) of the simulator's own sessions."""
    found: dict[str, list[int]] = defaultdict(list)
    for batch in MatchDaySimulator(config).batches():
        for event in batch:
            found[event["session_id"]].append(event_time(event, skew_s * 1000))
    return {sid: (len(times), min(times), max(times)) for sid, times in found.items()}


def table_sessions(settings: Settings, lane: str) -> list[dict[str, Any]]:
    rows = IcebergSessionTables(settings).read(lane).to_pylist()
    return [row for row in rows if row["user_id"] != PROBE_USER]


def wait_until_routing(settings: Settings, lane: str) -> None:
    """One probe event through the router: traffic produced before the router reads would reach the
    common topic as a backlog, its input partitions interleaved far beyond any allowed lateness."""
    now = int(time.time() * 1000)
    probe = {
        **dict.fromkeys(STRING_FIELDS, ""),
        "event_name": "probe",
        "event_id": str(uuid.uuid4()),
        "user_id": PROBE_USER,
        "lane": lane,
        "server_ts": now,
        "client_ts": now,
        "properties": {},
    }
    with EventProducer(settings) as producer:
        producer.produce_events(settings.all_events_topic(lane), [probe])
        producer.flush()
    common = settings.common_topic(lane)
    wait_until(lambda: committed_counts(settings, [common])[common], 90, 0.5, "the probe in the common topic")


def as_truth(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    return {
        row["session_id"]: (
            row["event_count"],
            round(row["session_start"].timestamp() * 1000),
            round(row["session_end"].timestamp() * 1000),
        )
        for row in rows
    }


def wait_for_all(settings: Settings, lane: str, expected: int) -> list[dict[str, Any]]:
    def complete() -> list[dict[str, Any]] | None:
        rows = table_sessions(settings, lane)
        return rows if sum(row["event_count"] for row in rows) >= expected else None

    return wait_until(complete, 120, 1.0, f"sessions covering {expected} events")


def check(rows: list[dict[str, Any]], truth: dict[str, tuple[int, int, int]]) -> None:
    keys = [row["session_key"] for row in rows]
    assert len(keys) == len(set(keys)), "a session row written twice"
    ids = Counter(row["session_id"] for row in rows)
    split = sorted(
        (row["session_id"], row["session_key"], *as_truth([row])[row["session_id"]], row["late_events"])
        for row in rows
        if ids[row["session_id"]] > 1
    )
    assert not split, (
        f"simulated sessions split in rows: {split[:6]}; truth: {[truth.get(r[0]) for r in split[:6]]}"
    )
    got = as_truth(rows)
    assert set(got) == set(truth), (sorted(set(truth) - set(got))[:5], sorted(set(got) - set(truth))[:5])
    wrong = {sid: (got[sid], truth[sid]) for sid in truth if got[sid] != truth[sid]}
    assert not wrong, list(wrong.items())[:5]
    assert all(
        row["duration_s"] == (row["session_end"] - row["session_start"]).total_seconds() for row in rows
    )


def test_simulated_sessions_equal_the_simulators_truth(make_settings: Any) -> None:
    settings = make_settings(**SESSION_SETTINGS, api_token=TEST_API_TOKEN)
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)])
    with WorkerProcess(settings, roles="router,sessions") as worker:
        worker.wait_healthy(90)
        wait_until_routing(settings, lane)
        config = sim_config(lane, seed=11)  # starting now: live traffic, after the probe
        truth = truth_sessions(config, settings.sessions_clock_skew_s)
        produce_simulated_traffic(settings, config, lane, rate=config.base_rate)
        rows = wait_for_all(settings, lane, config.events or 0)
        url = f"{worker.base_url}/api/v1/sessions/stats"
        assert httpx.get(url, params={"lane": lane}, timeout=10).status_code == 401
        stats = httpx.get(url, params={"lane": lane}, headers=worker.auth_headers, timeout=30).json()
    check(rows, truth)
    assert len(truth) > 100
    # The API sees the whole table: the simulator's sessions and the probe's (no platform).
    assert stats["sessions"] == len(truth) + 1
    assert stats["events_per_session"]["mean"] == pytest.approx(((config.events or 0) + 1) / (len(truth) + 1))
    by_platform = stats["by_platform"]
    assert by_platform.pop("(none)")["sessions"] == 1
    assert set(by_platform) == {row["platform"] for row in rows}
    assert sum(part["sessions"] for part in by_platform.values()) == len(truth)


def test_kill_9_of_the_sessions_worker_mid_stream_loses_and_repeats_nothing(make_settings: Any) -> None:
    settings = make_settings(**SESSION_SETTINGS)
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)])
    router = WorkerProcess(settings.model_copy(update={"http_port": free_ports(1)[0]}), roles="router")
    sessions = WorkerProcess(settings, roles="sessions")
    killed: list[int] = []
    looked = [0.0]

    def kill_once_some_are_committed(_: object) -> None:
        if killed or time.monotonic() - looked[0] < 1.0:
            return
        looked[0] = time.monotonic()
        if not table_sessions(settings, lane):
            return
        sessions.kill()  # kill -9: sessions closed but not committed, open ones, all in flight
        killed.append(len(table_sessions(settings, lane)))
        sessions.start()

    with router, sessions:
        router.wait_healthy(90)
        sessions.wait_healthy(90)
        wait_until_routing(settings, lane)
        config = sim_config(lane, seed=12)
        truth = truth_sessions(config, settings.sessions_clock_skew_s)
        produce_simulated_traffic(
            settings, config, lane, rate=config.base_rate, on_batch=kill_once_some_are_committed
        )
        assert killed, "the worker was never killed: no session committed while traffic ran"
        rows = wait_for_all(settings, lane, config.events or 0)
    check(rows, truth)
    assert 0 < killed[0] < len(rows)
