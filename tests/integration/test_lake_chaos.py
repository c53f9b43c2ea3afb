"""Chaos: kill -9 the lake worker at random moments while events flow; restart it each time.

At the end every produced event_id is in the lake exactly once. CI mode kills 3 times; the long
mode (``HIGHWAY_LONG_TESTS=1``) kills 20 times. Kill moments are random (seeded, printed) and are
chosen as "after the worker has written N more rows", so each kill lands while it is working.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.lake_fs import LakeStore
from core.envvars import with_overrides
from core.lake.layout import manifest_key
from core.lake.manifest import Manifest, orphan_files
from core.settings import Settings
from streams.lake import LakeStage, build_stage
from tests.conftest import MakeSettings
from tests.integration.test_lake import (
    LAKE_SETTINGS,
    BackgroundTraffic,
    Produced,
    lake_report,
    lake_state,
    produce_events,
    wait_for_lake,
)
from tests.support import LONG, WorkerProcess, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("lake_format", ["parquet", "iceberg"])
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    make_settings: MakeSettings, lake_format: str
) -> None:
    kills = 20 if LONG else 3
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"chaos seed {seed}, {kills} kills, {lake_format}")
    settings = make_settings(
        **{**LAKE_SETTINGS, "lake_flush_rows": 250, "lake_flush_age_s": 0.5, "lake_format": lake_format}
    )
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


class CrashBeforeManifest(BaseException):
    """Stands for the process dying between a flush's files and its manifest."""


def team_events(name: str, count: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    hours = [now - 3_600_000 * (i % 3) for i in range(count)]  # three partition values interleaved
    return [
        {
            "event_name": name,
            "event_id": f"c{i}",
            "user_id": "u",
            "server_ts": hours[i],
            "properties": {"i": i},
        }
        for i in range(count)
    ]


def run_until_crash_before_manifest(
    settings: Settings, later: list[dict[str, Any]], produced: Produced
) -> LakeStage:
    """Run a lake stage whose second flush dies after its files, before its manifest (``later`` is
    produced once the first flush is complete)."""
    crashing = build_stage(settings, CollectorRegistry(), overrides={})
    real_put_if = crashing.store.put_if

    def put_if(key: str, data: bytes, tag: str | None) -> str:
        if "/_manifests/" in key and crashing.handler.stats.flushes >= 1:
            raise CrashBeforeManifest(key)
        return real_put_if(key, data, tag)

    crashing.store.put_if = put_if  # type: ignore[method-assign]

    async def run() -> None:
        await crashing.service.start()
        await asyncio.to_thread(
            wait_until, lambda: crashing.handler.stats.flushes >= 1, 60, 0.1, "a first complete flush"
        )
        await asyncio.to_thread(produce_events, settings, later, produced)
        await asyncio.to_thread(
            wait_until, lambda: crashing.service.failure is not None, 60, 0.1, "the injected crash"
        )
        await crashing.service.stop()

    asyncio.run(run())
    return crashing


def test_crash_between_files_and_manifest_leaves_orphans_that_recovery_removes(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(
        **{**LAKE_SETTINGS, "topic_partitions": 1, "lake_flush_rows": 40, "lake_format": "parquet"}
    )
    produced = Produced()
    name = "team_create"
    events = team_events(name, 200)
    produce_events(settings, events[:100], produced)
    crashing = run_until_crash_before_manifest(settings, events[100:], produced)
    assert isinstance(crashing.service.failure, CrashBeforeManifest)
    assert not crashing.alive()
    store = LakeStore(settings)
    lane = settings.lanes[0]
    raw = store.get(manifest_key(lane, settings.event_topic(lane, name), 0))
    assert raw is not None
    committed = Manifest.from_bytes(raw).committed_offset
    stranded = [k for k in store.list_keys(f"{lane}/{name}/") if k.endswith(".parquet")]
    assert orphan_files(Manifest.from_bytes(raw), stranded), "the crash left no orphan to recover from"
    assert lake_report(settings, produced).duplicates == 0 or committed < 199
    # Restart with different batch boundaries: recovery deletes the orphans, replay fills the gap.
    restarted = build_stage(with_overrides(settings, lake_flush_rows=17), CollectorRegistry(), overrides={})

    async def second_run() -> None:
        await restarted.service.start()
        try:
            await asyncio.to_thread(
                wait_until, lambda: restarted.handler.stats.rows >= 199 - committed, 60, 0.2, "the replay"
            )
        finally:
            await restarted.service.stop()

    asyncio.run(second_run())
    assert restarted.handler.stats.orphans_deleted > 0
    report = lake_report(settings, produced)
    assert report.ok, report
    assert report.found == 200
