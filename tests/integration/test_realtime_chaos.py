"""Realtime under churn: kill -9 and rolling restarts *during* live simulator traffic stay exact.

A router worker (never disturbed) projects the simulator's paced traffic into the common topic;
realtime workers are killed or restarted while it flows. At the end every window of the truth must
be closed on every partition and equal the truth exactly, overall and by platform (the ``verify``
concurrency check reads the concurrency topic: the summed answer of all workers).

Short windows (5 s, a 25 s sliding view) so that a run closes a few dozen windows in about a
minute. Kill moments are random (seeded, printed): "after the worker has applied N more events", so
each kill lands while it works.

Long mode only (``HIGHWAY_LONG_TESTS=1``: 10 kills, three rolls of three workers). In CI the fault
suite (``tests/chaos``) kills and rolls the realtime stage during live traffic and checks every
window, and ``test_realtime_cluster`` kills one of two workers; these stage-only variants repeat
the faults more often than CI has time for.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.kafka_admin import KafkaAdmin
from connectors.local.process import free_ports
from connectors.simulator_feed import produce_simulated_traffic
from core.settings import Settings
from core.sim import SimConfig
from core.sim.truth import load_truth
from highway.verify.concurrency import ConcurrencyCheck
from highway.verify.framework import CheckResult, VerifyContext
from tests.integration.test_realtime import RealtimeWorker
from tests.support import WorkerProcess, long_mode_only, wait_until

pytestmark = pytest.mark.integration
CHURN_SETTINGS: dict[str, Any] = {
    "realtime_window_s": 5,
    "realtime_sliding_window_s": 25,
    "realtime_allowed_lateness_s": 15,
    "realtime_idle_timeout_s": 5,  # closes the last windows once the traffic stops
}


class LiveTraffic:
    """The simulator paced in real time into the lane's all-events topic, in a thread."""

    def __init__(self, settings: Settings, tmp_path: Path, seconds: float, rate: float = 250.0) -> None:
        self.settings = settings
        self.truth_path = tmp_path / f"truth-{settings.lanes[0]}.json"
        self.config = SimConfig(
            start_ms=(int(time.time() * 1000) // 60_000 - 30) * 60_000,
            seed=random.randrange(1_000_000),
            users=4_000,
            event_types=30,
            events=int(seconds * rate),
            base_rate=rate,
            lane=settings.lanes[0],
            surge_factor=1.0,  # a steady rate: the traffic lasts as long as the churn needs
        )
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            produce_simulated_traffic(
                self.settings,
                self.config,
                self.settings.lanes[0],
                rate=self.config.base_rate,
                truth_path=self.truth_path,
                stop=self._stop,
            )
        except BaseException as exc:  # reported by wait()
            self.error = exc

    def start(self) -> LiveTraffic:
        self._thread.start()
        return self

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """End the traffic before its planned length (the truth holds what was sent)."""
        self._stop.set()

    def wait(self, timeout_s: float = 300) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "simulated traffic did not finish"
        assert self.error is None, self.error


def churn_settings(make_settings: Any, partitions: int) -> Settings:
    settings: Settings = make_settings(**CHURN_SETTINGS, topic_partitions=partitions)
    lane = settings.lanes[0]
    KafkaAdmin(settings).ensure_topics(
        [settings.all_events_topic(lane), settings.common_topic(lane)], partitions=partitions
    )
    return settings


def router_worker(settings: Settings) -> WorkerProcess:
    """The router on its own port: it is never disturbed, the realtime workers are."""
    own_port = settings.model_copy(update={"http_port": free_ports(1)[0]})
    return WorkerProcess(own_port, roles="router", extra_env={"HIGHWAY_FAUST_BROKER_SESSION_TIMEOUT": "8"})


def applied_at_least(worker: WorkerProcess, target: float) -> Callable[[], bool]:
    return lambda: applied(worker) >= target


def applied(worker: WorkerProcess) -> float:
    """Events the worker applied since it started (its highway_events_total)."""
    try:
        text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "highway_events_total" and s.labels.get("lane") == worker.settings.lanes[0]
    )


def assert_every_window_exact(settings: Settings, traffic: LiveTraffic) -> CheckResult:
    """Wait until every window of the truth is closed cluster-wide, then require it exact."""
    truth = load_truth(traffic.truth_path)
    context = VerifyContext(settings=settings, truth=truth, lane=settings.lanes[0])

    def all_closed() -> CheckResult | None:
        (result,) = ConcurrencyCheck().run(context)
        if result.missing:
            return result  # a mismatch: report it now, waiting would not change it
        return result if result.actual == len(truth.distinct_users) else None

    result = wait_until(all_closed, 120, 1.0, "every window of the truth closed")
    print(f"{result.detail}; {len(truth.distinct_users)} windows in the truth")
    assert result.passed, result.detail
    assert len(truth.distinct_users) >= 10
    return result


def api_windows(worker: WorkerProcess, truth_windows: dict[int, int]) -> dict[int, int]:
    """The worker's /api/v1/concurrency sums of the complete windows the truth has (keyed as the truth)."""
    starts = sorted(truth_windows)
    params = {
        "lane": worker.settings.lanes[0],
        "window": "5s",
        "from": str(starts[0]),
        "to": str(starts[-1] + 1),
    }
    body = httpx.get(f"{worker.base_url}/api/v1/concurrency", params=params, timeout=10).json()
    rows = {row["window_start"]: row for row in body["windows"]}
    return {k: rows[k]["counts"]["all"] for k in truth_windows if k in rows and rows[k]["complete"]}


@long_mode_only("CI covers this fault in tests/chaos")
def test_kill_9_during_live_traffic_every_window_exact(make_settings: Any, tmp_path: Path) -> None:
    kills = 10
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"realtime chaos seed {seed}, {kills} kills")
    settings = churn_settings(make_settings, partitions=3)
    router = router_worker(settings)
    realtime = RealtimeWorker(settings)
    router.start()
    realtime.start()
    try:
        router.wait_healthy()
        realtime.wait_healthy()
        traffic = LiveTraffic(settings, tmp_path, seconds=25 + 15 * kills).start()
        for _ in range(kills):
            target = rng.randint(200, 2_000)
            wait_until(
                applied_at_least(realtime, target), 90, 0.05, f"{target} events applied before the kill"
            )
            assert traffic.running(), "the kills must land during the traffic"
            realtime.kill()
            realtime.start()
            realtime.wait_healthy()
        traffic.wait()
        assert_every_window_exact(settings, traffic)
    finally:
        realtime.kill()
        router.stop()


@long_mode_only("CI covers this fault in tests/chaos")
def test_three_workers_rolling_restart_during_live_traffic_summed_exact(
    make_settings: Any, tmp_path: Path
) -> None:
    rounds = 3
    settings = churn_settings(make_settings, partitions=6)
    router = router_worker(settings)
    workers = [RealtimeWorker(settings)] + [
        RealtimeWorker(settings.model_copy(update={"http_port": port})) for port in free_ports(2)
    ]
    router.start()
    for worker in workers:
        worker.start()
    try:
        router.wait_healthy()
        for worker in workers:
            worker.wait_healthy()
        traffic = LiveTraffic(settings, tmp_path, seconds=30 + 45 * rounds).start()
        wait_until(lambda: all(applied(w) > 0 for w in workers), 90, 0.2, "every worker applies events")
        for _ in range(rounds):
            for worker in workers:
                assert traffic.running(), "the restarts must land during the traffic"
                worker.stop()
                worker.start()
                worker.wait_healthy()
                # Rolling: the next one only once this one has partitions and works again.
                wait_until(applied_at_least(worker, 1), 90, 0.1, "the restarted worker applies events")
        traffic.wait()
        assert_every_window_exact(settings, traffic)
        truth = load_truth(traffic.truth_path)
        for worker in workers:  # any worker answers for the whole cluster
            assert api_windows(worker, truth.distinct_users) == truth.distinct_users
    finally:
        for worker in workers:
            worker.kill()
        router.stop()
