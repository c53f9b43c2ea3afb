"""Realtime with two workers in one group: summed answers exact, a real Prometheus sums the gauges
exactly, a killed worker's partitions are taken over and rebuilt exactly, a restarted one rejoins."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.local.process import free_ports
from tests.integration.test_realtime import (
    MIN,
    RealtimeWorker,
    Traffic,
    assert_exact,
    lane_settings,
    produce,
    windows,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration
POPULATION = 400


def phase(traffic: Traffic, rng: random.Random, minutes: range, push_minute: int) -> list[dict[str, Any]]:
    events = [e for minute in minutes for e in traffic.make(rng, minute, 800, POPULATION)]
    return events + traffic.push(push_minute, POPULATION)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """A real Prometheus on a free port; call it with scrape targets to start it."""
    binary = shutil.which("prometheus")
    assert binary, "the Debian package `prometheus` must be installed (CI installs it)"
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: list[str]) -> str:
        port = free_ports(1)[0]
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: highway\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


def promql(base: str, query: str) -> list[dict[str, Any]]:
    try:
        body = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5).json()
    except (httpx.HTTPError, ValueError):  # not up yet, or "Service Unavailable" while it starts
        return []
    return list(body.get("data", {}).get("result", []))


def test_two_workers_prometheus_kill_and_rejoin_stay_exact(make_settings: Any, prometheus: Any) -> None:
    settings_a = lane_settings(make_settings)
    settings_b = settings_a.model_copy(update={"http_port": free_ports(1)[0]})
    lane = settings_a.lanes[0]
    rng = random.Random(7)
    traffic = Traffic(base_ms=(int(time.time() * 1000) // MIN - 180) * MIN)
    a, b = RealtimeWorker(settings_a).start(), RealtimeWorker(settings_b).start()
    try:
        a.wait_healthy()
        b.wait_healthy()
        produce(settings_a, phase(traffic, rng, range(4), push_minute=5))
        assert_exact(a, traffic, [0, 1, 2, 3])
        assert_exact(b, traffic, [0, 1, 2, 3])

        # Each worker exports only its own partitions; Prometheus sums them exactly.
        base = prometheus([f"127.0.0.1:{settings_a.http_port}", f"127.0.0.1:{settings_b.http_port}"])
        selector = f'lane="{lane}",window="1m",state="closed",dimension="platform"'

        def summed() -> dict[str, float] | None:
            owners = promql(base, f'highway_realtime_partitions{{lane="{lane}"}} > 0')
            starts = promql(base, f'highway_window_start_seconds{{lane="{lane}",state="closed"}}')
            if len(owners) != 2 or len({s["value"][1] for s in starts}) != 1 or len(starts) != 2:
                return None
            result = promql(base, f"sum by (value) (highway_concurrent_users{{{selector}}})")
            return {r["metric"]["value"]: float(r["value"][1]) for r in result} or None

        by_platform = wait_until(summed, 60, 1.0, "Prometheus scraping both workers")
        assert by_platform == {k: float(v) for k, v in traffic.expected(3)[1].items()}

        # kill -9 one worker: the other takes its partitions over and rebuilds them exactly.
        a.kill()
        produce(settings_a, phase(traffic, rng, range(5, 8), push_minute=9))
        assert_exact(b, traffic, [0, 1, 2, 3, 5, 6, 7])

        # Restart it: partitions move back, both answer exactly for everything.
        a.start()
        a.wait_healthy()
        produce(settings_a, phase(traffic, rng, range(9, 11), push_minute=12))
        every = [0, 1, 2, 3, 5, 6, 7, 9, 10]
        assert_exact(a, traffic, every)
        assert_exact(b, traffic, every)

        # The 5-minute sliding view is the exact union of its five minutes.
        rows = windows(b, traffic, range(10, 11), window="5m")
        union = set().union(*(traffic.users[traffic.base_ms + m * MIN] for m in range(6, 11)))
        assert rows[10]["counts"]["all"] == len(union)
    finally:
        a.kill()
        b.stop()
