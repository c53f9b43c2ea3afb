"""The router under failure, on the real broker: a CPU hog during a burst of new types, kill -9 mid
burst, the broker stopped under it (long mode; CI restarts the broker under every stage in
``tests/chaos``), and a delivery failure. Nothing lost, no duplicates in the default exactly-once
mode, and the worker never dies on a transient failure.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.local.stack import LocalStack
from connectors.producer import EventProducer
from connectors.simulator_feed import produce_simulated_traffic
from core.settings import Settings
from core.sim import SimConfig
from tests.conftest import MakeSettings
from tests.integration.router_support import committed_all, input_progress, produce, sample_event, verify
from tests.support import WorkerProcess, committed_counts, cpu_hog, health, long_mode_only, wait_until

pytestmark = pytest.mark.integration


def _exact(settings: Settings, truth: Path) -> dict[str, int]:
    """Verify every output topic: nothing missing, nothing duplicated; the per-event total."""
    results = verify(settings, truth)
    # Every check's result first: a failure names one topic, the others say where the events went.
    print("\n" + "\n".join(str(result) for result in results.values()))
    for name in ("per-event-topics", "common"):
        assert results[name].present, results[name]
        assert results[name].missing == 0, results[name]
        assert results[name].duplicates == 0, results[name]
    assert results["dlq"].passed, results["dlq"]
    return {"per_event": int(results["per-event-topics"].actual or 0)}


def test_a_burst_of_300_new_types_under_a_cpu_hog(make_settings: MakeSettings, tmp_path: Path) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    statuses: list[tuple[int, str]] = []
    with WorkerProcess(settings, roles="router") as worker:
        worker.wait_healthy()
        with cpu_hog():
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    code, body = health(worker)
                    statuses.append((code, str(body.get("status"))))
                    time.sleep(0.25)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            truth = tmp_path / "truth.json"
            produce(settings, events=15_000, event_types=300, truth=truth, seed=3)
            try:
                wait_until(lambda: committed_all(settings), 240, 0.5, "burst routed under the hog")
            finally:
                sampling.set()
                sampler.join(5)
        assert worker.alive()
        assert health(worker)[1]["status"] == "ok"
    topics = KafkaAdmin(settings).list_topics(settings.event_topic_pattern(lane))
    assert len(topics) >= 250
    assert _exact(settings, truth)["per_event"] == 15_000
    assert all(code == 200 for code, _ in statuses), statuses  # degraded at worst, never failed
    print(f"\nhealth during the burst: {sorted({status for _, status in statuses})}")


def _paced_feed(settings: Settings, truth: Path, events: int, types: int, rate: float) -> threading.Thread:
    """Simulator traffic at ``rate`` events/s in the background; the truth file is written at the end."""
    start_ms = int(time.time() * 1000) - 600_000
    config = SimConfig(
        start_ms=start_ms, seed=5, users=2_000, events=events, event_types=types, base_rate=rate
    )
    return threading.Thread(
        target=produce_simulated_traffic,
        args=(settings, config, settings.lanes[0]),
        kwargs={"rate": rate, "truth_path": truth},
        daemon=True,
    )


def test_kill_9_mid_burst_leaves_no_duplicates(make_settings: MakeSettings, tmp_path: Path) -> None:
    settings = make_settings(router_batch_size=500)
    truth = tmp_path / "truth.json"
    total = 60_000
    feeder = _paced_feed(settings, truth, total, types=300, rate=2_000)  # ~30 s of live traffic
    worker = WorkerProcess(settings, roles="router").start()
    kills: list[int] = []
    try:
        worker.wait_healthy()
        feeder.start()
        for _ in range(2):
            before = sum(_committed(settings).values())

            def progressed(floor: int = before) -> bool:
                return sum(_committed(settings).values()) > floor

            wait_until(progressed, 120, 0.1, "progress")
            time.sleep(0.3)  # mid-transaction: output sent, not committed
            kills.append(sum(_committed(settings).values()))
            assert feeder.is_alive(), "the traffic ended before this kill; nothing mid-stream was tested"
            worker.kill()
            worker.start()
            worker.wait_healthy()
        feeder.join(300)
        wait_until(lambda: committed_all(settings), 240, 0.5, "router committed all input after restarts")
    finally:
        worker.stop()
    assert _exact(settings, truth)["per_event"] == total
    print(f"\nkill -9 with {kills} of {total} committed, during live traffic: 0 lost, 0 duplicates")


@long_mode_only("CI restarts the broker under every stage in tests/chaos")
def test_broker_stopped_and_restarted_under_live_traffic(
    make_settings: MakeSettings, local_stack: LocalStack, tmp_path: Path
) -> None:
    if not local_stack.kafka.restartable:
        pytest.skip("the broker is external (HIGHWAY_KAFKA_BOOTSTRAP): this test must restart it")
    settings = make_settings()
    truth = tmp_path / "truth.json"
    config = SimConfig(
        start_ms=int(time.time() * 1000) - 600_000, seed=5, users=500, events=12_000, event_types=60
    )
    feeder = threading.Thread(
        target=produce_simulated_traffic,
        args=(settings, config, settings.lanes[0]),
        kwargs={"rate": 800.0, "truth_path": truth},
        daemon=True,
    )
    with WorkerProcess(settings, roles="router") as worker:
        worker.wait_healthy()
        feeder.start()
        time.sleep(4)
        local_stack.kafka.stop()
        try:
            wait_until(lambda: health(worker)[1].get("status") == "degraded", 60, 0.5, "degraded")
            reason = health(worker)[1].get("reason", "")
            time.sleep(3)
            assert worker.alive()
        finally:
            local_stack.kafka.start()
        feeder.join(300)
        assert truth.exists(), "the producer did not finish cleanly"
        wait_until(lambda: committed_all(settings), 240, 0.5, "traffic routed after the restart")
        wait_until(lambda: health(worker)[1].get("status") == "ok", 60, 0.5, "ok again")
        assert worker.alive()
    print(f"\nwhile the broker was away: degraded ({reason})")
    assert _exact(settings, truth)["per_event"] == 12_000


def _committed(settings: Settings) -> dict[int, int]:
    progress = input_progress(settings)
    return progress[1] if progress is not None else {}


def _set_max_message_bytes(settings: Settings, topic: str, value: int) -> None:
    admin = AdminClient(confluent_config(settings))
    entry = ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("TOPIC", topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_a_delivery_failure_commits_nothing_past_it_even_at_shutdown_then_recovers(
    make_settings: MakeSettings, delivery: str
) -> None:
    settings = make_settings(router_delivery=delivery)
    lane = settings.lanes[0]
    source, dlq = settings.all_events_topic(lane), settings.dlq_topic(lane)
    # A real failure, no fault injection: a dead-letter topic too small for the letter to come.
    KafkaAdmin(settings).ensure_topics([dlq], config={"max.message.bytes": "10000"})
    worker = WorkerProcess(settings, roles="router").start()
    try:
        worker.wait_healthy()
        with EventProducer(settings) as producer:
            for index in range(10):
                producer.produce_raw(source, orjson.dumps(sample_event("contest_join", index)), b"same-key")
            producer.flush()
        wait_until(lambda: sum(_committed(settings).values()) == 10, 60, 0.3, "the good events committed")
        before = _committed(settings)
        with EventProducer(settings) as producer:
            # 45 kB of noise: a dead letter the compression cannot shrink under the topic's limit
            producer.produce_raw(source, os.urandom(45_000), b"same-key")
            producer.produce_raw(source, orjson.dumps(sample_event("contest_join", 11)), b"same-key")
            producer.flush()
        wait_until(lambda: health(worker)[1].get("status") == "degraded", 60, 0.3, "degraded on the failure")
        assert "dead-letter topic" in health(worker)[1]["reason"]
        time.sleep(3)
        worker.stop()  # shutdown while failing: the revoke and the stop must commit nothing
        assert _committed(settings) == before
        assert sum(before.values()) == 10
        # The operator fixes the topic; a restarted worker routes the rest without help.
        _set_max_message_bytes(settings, dlq, 1_000_000)
        worker.start()
        worker.wait_healthy()
        wait_until(lambda: sum(_committed(settings).values()) == 12, 120, 0.3, "the rest committed")
    finally:
        worker.stop()
    counts = committed_counts(settings, [dlq, settings.common_topic(lane)])
    assert counts[dlq] == 1
    if delivery == "exactly_once":  # the aborted attempts left nothing a reader sees
        assert counts[settings.common_topic(lane)] == 11
    else:
        assert counts[settings.common_topic(lane)] >= 11
