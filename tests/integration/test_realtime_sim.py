"""Simulator traffic through router and realtime: every closed window equals the truth exactly.

The match-day simulator writes to the lane's all-events topic and records its ground truth; a
worker runs the router (which projects the common attributes) and the realtime stage; the
``concurrency`` verify check then compares every closed window of the concurrency topic with the
truth's distinct users per minute, overall and by platform.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connectors.simulator_feed import produce_simulated_traffic
from core.sim import SimConfig
from core.sim.truth import load_truth
from highway.verify.concurrency import ConcurrencyCheck
from highway.verify.framework import CheckResult, VerifyContext
from tests.integration.test_realtime import RealtimeWorker
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_simulator_windows_equal_truth(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(realtime_allowed_lateness_s=60)
    lane = settings.lanes[0]
    truth_path = tmp_path / "truth.json"
    config = SimConfig(
        start_ms=(int(time.time() * 1000) // 60_000 - 90) * 60_000,
        seed=5,
        users=3_000,
        event_types=40,
        events=15_000,
        base_rate=40.0,  # about six simulated minutes
        lane=lane,
    )
    worker = RealtimeWorker(settings)
    worker.roles = "router,realtime"
    with worker:
        worker.wait_healthy()
        # Live traffic, as in production: the router interleaves its input partitions into each
        # common-topic partition, so a pre-loaded backlog would arrive there out of order by far
        # more than the allowed lateness (catching up on a backlog needs a larger allowance).
        # Replayed 4x faster than real time: out of order by the router's delay x 4 at most, which
        # the allowed lateness (60 s) covers while the router is up to 15 s behind.
        produce_simulated_traffic(settings, config, lane, rate=3_000, truth_path=truth_path, speed=4.0)
        truth = load_truth(truth_path)
        context = VerifyContext(settings=settings, truth=truth, lane=lane)

        def verified() -> CheckResult | None:
            (result,) = ConcurrencyCheck().run(context)
            closed_enough = result.present and isinstance(result.actual, int) and result.actual >= 2
            return result if closed_enough else None

        result = wait_until(verified, 120, 1.0, "closed windows of the simulator run")
    assert result.passed, result.detail
    assert len(truth.distinct_users) >= 4
