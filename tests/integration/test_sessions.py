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
from collections import defaultdict
from typing import Any

import pytest

from connectors.kafka_admin import KafkaAdmin
from connectors.local.process import free_ports
from connectors.sessions_lake import IcebergSessionTables
from connectors.simulator_feed import produce_simulated_traffic
from core.sessions.parse import event_time
from core.settings import Settings
from core.sim import SimConfig
from core.sim.simulator import MatchDaySimulator
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
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
        events=4_000,
        base_rate=200.0,  # 20 simulated (= wall, paced) seconds; ~2 events/s per open session
        surge_factor=1.0,
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
    return IcebergSessionTables(settings).read(lane).to_pylist()


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
    ids = [row["session_id"] for row in rows]
    assert len(ids) == len(set(ids)), "a simulated session split in two rows"
    got = as_truth(rows)
    assert set(got) == set(truth), (sorted(set(truth) - set(got))[:5], sorted(set(got) - set(truth))[:5])
    wrong = {sid: (got[sid], truth[sid]) for sid in truth if got[sid] != truth[sid]}
    assert not wrong, list(wrong.items())[:5]
    assert all(
        row["duration_s"] == (row["session_end"] - row["session_start"]).total_seconds() for row in rows
    )


def test_simulated_sessions_equal_the_simulators_truth(make_settings: Any) -> None:
    settings = make_settings(**SESSION_SETTINGS)
    lane = settings.lanes[0]
    config = sim_config(lane, seed=11)
    truth = truth_sessions(config, settings.sessions_clock_skew_s)
    KafkaAdmin(settings).ensure_topics([settings.common_topic(lane)])
    with WorkerProcess(settings, roles="router,sessions") as worker:
        worker.wait_healthy(90)
        produce_simulated_traffic(settings, config, lane, rate=config.base_rate)
        rows = wait_for_all(settings, lane, config.events or 0)
    check(rows, truth)
    assert len(truth) > 100


def test_kill_9_of_the_sessions_worker_mid_stream_loses_and_repeats_nothing(make_settings: Any) -> None:
    settings = make_settings(**SESSION_SETTINGS)
    lane = settings.lanes[0]
    config = sim_config(lane, seed=12)
    truth = truth_sessions(config, settings.sessions_clock_skew_s)
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
        produce_simulated_traffic(
            settings, config, lane, rate=config.base_rate, on_batch=kill_once_some_are_committed
        )
        assert killed, "the worker was never killed: no session committed while traffic ran"
        rows = wait_for_all(settings, lane, config.events or 0)
    check(rows, truth)
    assert 0 < killed[0] < len(rows)
