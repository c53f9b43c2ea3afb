"""Chaos: kill -9 the lake worker at random moments while events flow; restart it each time.

At the end every produced event_id is in the lake exactly once. CI mode kills 3 times; the long
mode (``HIGHWAY_LONG_TESTS=1``) kills 20 times. Kill moments are random (seeded, printed) and are
chosen as "after the worker has written N more rows", so each kill lands while it is working.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    BackgroundTraffic,
    lake_state,
    wait_for_lake,
)
from tests.support import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
LONG = os.environ.get("HIGHWAY_LONG_TESTS") == "1"  # test-mode switch, not product configuration


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(make_settings: MakeSettings) -> None:
    kills = 20 if LONG else 3
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"chaos seed {seed}, {kills} kills")
    settings = make_settings(**{**LAKE_SETTINGS, "lake_flush_rows": 250, "lake_flush_age_s": 0.5})
    worker = WorkerProcess(settings, roles="lake")
    orphans_deleted = 0
    try:
        with BackgroundTraffic(settings, event_types=25, batch=200, pause_s=0.1) as traffic:
            worker.start()
            for _ in range(kills):
                worker.wait_healthy()
                target = rng.randint(1, 1_500)

                def written(target: int = target) -> bool:
                    return bool(lake_state(worker)["rows"] >= target)

                wait_until(written, 90, 0.05, f"{target} rows written before the kill")
                orphans_deleted += lake_state(worker)["orphans_deleted"]
                worker.kill()
                worker.start()
            worker.wait_healthy()
            wait_until(lambda: lake_state(worker)["rows"] > 0, 90, 0.2, "progress after the last restart")
            produced = traffic.stop()
        report = wait_for_lake(settings, produced, timeout_s=180)
        print(f"chaos: {produced.total} events, {kills} kills, orphans deleted (seen) {orphans_deleted}")
    finally:
        worker.stop()
    assert report.ok, report
    assert report.missing == 0
    assert report.duplicates == 0
    assert report.found == produced.total
