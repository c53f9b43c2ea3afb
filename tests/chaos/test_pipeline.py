"""One fault suite across every stage: faults during live simulator traffic, then the truth.

A router, a lake and a realtime worker (separate processes, as in production) run while the
simulator feeds the lane at a steady rate, with a busy loop competing for the cores. During the
traffic each round, in a random order: kill -9 of each stage (restarted at once); a stage killed
twice, the second time while it rejoins its group (mid-rebalance); a rolling restart of every stage;
the broker stopped and started again with every stage running; S3 away for longer than the lake's
poll and flush interval. Kills land at random moments of a steady flow, so also between a lake
flush's data files and its commit. Afterwards everything is reconciled against the simulator's
truth: every per-event and common topic exact (nothing missing, nothing doubled), no dead letters,
the lake exact in both rows and ids, every closed concurrency window exact.

CI runs one round (about 4 minutes on two shared cores); ``HIGHWAY_LONG_TESTS=1`` runs four rounds
(20 kills -9). The traffic stops 20 s after the last fault, so a loaded machine stretches a run rather
than failing it. The seed and when each fault ended are printed; docs/operations.md lists the runs so
far. The stage-only chaos tests whose faults this suite covers (realtime kill -9 and rolling restart,
router broker restart) run in long mode only.

Bugs it found and had fixed: the router's output partitioner (CRC32, unlike the producers'
murmur2) mixing input partitions so a backlog put events behind later ones; quiet realtime
partitions closing windows while the router was down or the broker away; an admin client that
stopped answering after a broker restart; the lake stage dying when S3 was away during a
rebalance; a new type's events, held for their topic, projected into the common topic behind
later events (counted late); the router blocked in ``send_offsets_to_transaction`` for minutes
after a broker restart; the lake's consumer left without partitions after a session timeout; 3
events missing from a per-event topic but committed in the common topic (likely librdkafka reusing
an aborted unit's sequence numbers: the router now replaces its producer after every abort, see
docs/operations.md).
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

from connectors.iceberg_lake import IcebergLake
from connectors.lake_reader import committed_next_offset, lake_columns
from connectors.local.process import free_ports
from connectors.local.stack import LocalStack
from core.routing.naming import event_topic_for
from core.settings import Settings
from core.sim.truth import load_truth
from highway.verify.framework import CheckResult, VerifyContext, registered_checks, run_checks
from highway.verify.kafka_read import read_topics
from tests.chaos.trace import missing_routed_events
from tests.conftest import MakeSettings
from tests.integration.test_lake import LAKE_SETTINGS
from tests.integration.test_realtime import RealtimeWorker
from tests.integration.test_realtime_chaos import (
    CHURN_SETTINGS,
    LiveTraffic,
    assert_every_window_exact,
    churn_settings,
    router_worker,
)
from tests.support import LONG, WorkerProcess, cpu_hog, health, wait_until

pytestmark = pytest.mark.integration
OUTAGE_S = 12.0  # longer than the lake's flush age and the consumers' poll interval
AFTER_FAULTS_S = 20.0  # traffic through the recovered pipeline before it stops (several windows, flushes)


def lake_worker(settings: Settings) -> WorkerProcess:
    return WorkerProcess(settings.model_copy(update={"http_port": free_ports(1)[0]}), roles="lake")


def realtime_worker(settings: Settings) -> WorkerProcess:
    return RealtimeWorker(settings.model_copy(update={"http_port": free_ports(1)[0]}))


def status(worker: WorkerProcess) -> str | None:
    return health(worker)[1].get("status")


def realtime_state(worker: WorkerProcess) -> str:
    """What the realtime worker says of its partitions (printed when its windows disappoint)."""
    wanted = ("highway_consumer_lag", "highway_late_events", "highway_window_start", "highway_realtime_part")
    try:
        text = httpx.get(f"{worker.base_url}/metrics", timeout=5).text
    except httpx.HTTPError as exc:
        return f"realtime /metrics: {exc!r}"
    return "\n".join(line for line in text.splitlines() if line.startswith(wanted))


def pause(rng: random.Random, low: float, high: float) -> None:
    """A random moment inside the traffic (when the next fault lands), not a wait for a condition."""
    threading.Event().wait(rng.uniform(low, high))


class Pipeline:
    """The three stage workers, each restartable after a kill -9."""

    def __init__(self, settings: Settings) -> None:
        self.workers: dict[str, WorkerProcess] = {
            "router": router_worker(settings),
            "lake": lake_worker(settings),
            "realtime": realtime_worker(settings),
        }

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()
        for worker in self.workers.values():
            worker.wait_healthy(120)

    def kill_and_restart(self, stage: str) -> None:
        worker = self.workers[stage]
        worker.kill()
        worker.start()
        worker.wait_healthy(120)

    def all_ok(self) -> bool:
        return all(worker.alive() and status(worker) == "ok" for worker in self.workers.values())

    def report(self) -> None:
        """What each stage says of itself, and its threads' stacks in its log (for a failed run)."""
        for stage, worker in self.workers.items():
            print(f"{stage} /health: {health(worker)}; log: {worker.log_dir}")
            worker.dump_stacks()
        threading.Event().wait(3)  # the stack dumps are written by each worker's event loop

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


def faults(pipeline: Pipeline, stack: LocalStack, rng: random.Random) -> list[tuple[str, Callable[[], None]]]:
    def broker_restart() -> None:
        stack.kafka.stop()
        try:
            pause(rng, OUTAGE_S, OUTAGE_S + 4)
            assert all(w.alive() for w in pipeline.workers.values()), "a worker died with the broker away"
        finally:
            stack.kafka.start()

    def s3_away() -> None:
        stack.s3.stop()
        try:
            pause(rng, OUTAGE_S, OUTAGE_S + 4)
            assert pipeline.workers["lake"].alive(), "the lake worker died with S3 away"
        finally:
            stack.s3.start()

    def kill_while_joining(stage: str) -> None:
        """The second kill lands while the restarted worker joins its group (a rebalance in flight)."""
        pipeline.kill_and_restart(stage)
        pause(rng, 0.0, 1.5)
        pipeline.kill_and_restart(stage)

    def roll() -> None:
        """A rolling restart: each stage stopped (SIGTERM) and started again, one after another."""
        for worker in pipeline.workers.values():
            worker.stop()
            worker.start()
            worker.wait_healthy(120)

    kills = [
        (f"kill -9 {stage}", lambda stage=stage: pipeline.kill_and_restart(stage))
        for stage in pipeline.workers
    ]
    rebalancing = rng.choice(list(pipeline.workers))
    return [
        *kills,
        (f"kill -9 {rebalancing} twice, mid-rebalance", lambda: kill_while_joining(rebalancing)),
        ("rolling restart", roll),
        ("broker restart", broker_restart),
        ("S3 away", s3_away),
    ]


def exact_topics_and_lake(settings: Settings, truth_path: Path) -> dict[str, CheckResult]:
    """The verify checks once the router's topics and the lake have caught up — or, after the
    deadline, as they stand (to report).

    Each attempt is a new verify run (a new context): a context reads each topic once, so reusing
    one would judge the topics as the first attempt saw them. That happened after a broker restart,
    while the router's transaction was blocked: the topics were read short once, and never again.
    """
    truth = load_truth(truth_path)
    checks = registered_checks(["per-event-topics", "common", "dlq", "lake"])
    last: dict[str, CheckResult] = {}

    def settled() -> bool:
        last.clear()
        context = VerifyContext(settings, truth, settings.lanes[0])
        last.update((result.name, result) for result in run_checks(context, checks))
        caught_up = [last[name] for name in ("per-event-topics", "common", "lake rows")]
        return all(result.present and (result.missing == 0 or result.duplicates > 0) for result in caught_up)

    try:
        wait_until(settled, 240, 2.0, "the router's topics and the lake caught up with the truth")
    except AssertionError:
        print("the topics or the lake did not catch up; the checks as they stand:")
    return last


def missing_lake_offsets(settings: Settings) -> str:
    """Where the lake's missing rows sit: per topic partition, the offset ranges that are in Kafka but
    not in the lake, next to the lake's committed next offset — the first thing to read on a failure."""
    lane = settings.lanes[0]
    rows = lake_columns(settings, lane, ["event_name", "_kafka_partition", "_kafka_offset"]).to_pydict()
    in_lake: dict[tuple[str, int], set[int]] = {}
    for name, partition, offset in zip(
        rows["event_name"], rows["_kafka_partition"], rows["_kafka_offset"], strict=True
    ):
        in_lake.setdefault((event_topic_for(settings, lane, name), partition), set()).add(offset)
    lake = IcebergLake(settings, {}) if settings.lake_format == "iceberg" else None
    report = []
    for topic, messages in read_topics(settings, sorted({topic for topic, _ in in_lake})).items():
        by_partition: dict[int, list[int]] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                by_partition.setdefault(partition, []).append(offset)
        for partition, offsets in sorted(by_partition.items()):
            gone = [o for o in offsets if o not in in_lake.get((topic, partition), set())]
            if gone:
                table = topic.rsplit(".", 1)[-1]
                committed = committed_next_offset(settings, lake, lane, table, topic, partition)
                report.append(
                    f"{topic}[{partition}]: {len(gone)} missing, offsets {gone[0]}..{gone[-1]}, "
                    f"kafka end {offsets[-1] + 1}, lake committed next {committed}"
                )
    return "\n".join(report) or "no offset missing from the lake"


@pytest.mark.timeout(2400 if LONG else 900)
def test_every_stage_killed_broker_restarted_and_s3_away_during_live_traffic(
    make_settings: MakeSettings, local_stack: LocalStack, tmp_path: Path
) -> None:
    if not (local_stack.kafka.restartable and local_stack.s3.restartable):
        pytest.fail("the fault suite restarts the broker and S3: it needs the local stack, not external ones")
    rounds = 4 if LONG else 1  # long: 20 kills -9
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)

    def settings_with_lake(**overrides: Any) -> Settings:
        return make_settings(**{**overrides, **LAKE_SETTINGS, "topic_partitions": 3})

    settings = churn_settings(settings_with_lake, partitions=3)
    assert settings.realtime_window_s == CHURN_SETTINGS["realtime_window_s"]
    pipeline = Pipeline(settings)
    done: list[str] = []
    try:
        pipeline.start()
        with cpu_hog(1):
            # A cap, not the length: the traffic stops AFTER_FAULTS_S after the last fault, however
            # long the faults took on a loaded machine.
            traffic = LiveTraffic(settings, tmp_path, seconds=60 + 400 * rounds, rate=200.0).start()
            started = time.monotonic()
            for _ in range(rounds):
                round_faults = faults(pipeline, local_stack, rng)
                for name, fault in rng.sample(round_faults, len(round_faults)):
                    pause(rng, 2, 6)
                    assert traffic.running(), (
                        f"the traffic ended before {name}: the faults must land during it"
                    )
                    fault()
                    done.append(f"{name} (done at {time.monotonic() - started:.0f}s)")
                    try:
                        wait_until(pipeline.all_ok, 180, 0.5, f"every stage ok again after {name}")
                    except AssertionError:
                        pipeline.report()
                        raise
            pause(rng, AFTER_FAULTS_S, AFTER_FAULTS_S)
            assert traffic.running(), "the traffic ended before the recovered pipeline carried it a while"
            traffic.stop()
            traffic.wait(60)
        print(f"\nfault suite seed {seed}: {', '.join(done)}")
        results = exact_topics_and_lake(settings, traffic.truth_path)
        if not all(result.passed for result in results.values()):
            pipeline.report()
        for name, result in results.items():
            print(f"  {name}: {result.detail or 'exact'} (expected {result.expected}, found {result.actual})")
        if results["lake rows"].missing:
            print(missing_lake_offsets(settings))
        if results["per-event-topics"].missing:
            router = pipeline.workers["router"]
            logs = router.log_dir.glob(f"worker-{router.settings.http_port}-*.log")
            print(missing_routed_events(settings, load_truth(traffic.truth_path), logs))
        for name in ("per-event-topics", "common", "lake rows"):
            result = results[name]
            assert (result.missing, result.duplicates) == (0, 0), result
        assert results["dlq"].passed, results["dlq"]
        assert results["lake tables"].passed, results["lake tables"]
        try:
            assert_every_window_exact(settings, traffic)
        except AssertionError:
            print(realtime_state(pipeline.workers["realtime"]))
            pipeline.report()
            raise
    finally:
        pipeline.stop()
