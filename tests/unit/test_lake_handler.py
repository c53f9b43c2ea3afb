"""The lake stage's consumer-service handler, driven directly with fake messages and in-memory edges:
recovery on assignment, buffering, flush reasons (age flushes an idle partition), failures that keep
the buffers, revocation, the final flush, and the metrics on the registry passed in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client import CollectorRegistry

from core.lake.commit import LakeCommitter
from core.lake.flush import FlushPolicy
from core.lake.layout import manifest_key
from core.lake.manifest import Manifest
from core.settings import Settings
from streams.lake import RECLAIM_AFTER_S, LakeHandler, build_stage
from streams.lake_config import consumer_config, topic_regex
from streams.lake_metrics import LakeMetrics, StoreRetries
from tests.unit.test_lake_protocol import BASE_MS, SETTINGS, World

A0, B0 = ("l.event.a", 0), ("l.event.b", 0)
ORPHAN = "l/a/dt=2027-01-15/hour=08/part-00000-00000000000000000010.parquet"
CONSUMER = cast(Any, object())


class Message:
    def __init__(self, tp: tuple[str, int], offset: int) -> None:
        self.tp, self._offset = tp, offset

    def topic(self) -> str:
        return self.tp[0]

    def partition(self) -> int:
        return self.tp[1]

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, BASE_MS)

    def value(self) -> bytes:
        return orjson.dumps({"event_id": f"e{self._offset}", "server_ts": BASE_MS, "properties": {}})


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def handler_for(
    world: World, pool: ThreadPoolExecutor, **policy: Any
) -> tuple[LakeHandler, CollectorRegistry]:
    registry = CollectorRegistry()
    limits = {"max_rows": 1000, "max_bytes": 1 << 30, "max_age_s": 60.0, "max_buffered_bytes": 1 << 30}
    handler = LakeHandler(
        LakeCommitter(SETTINGS, world, world, pool),
        FlushPolicy(**{**limits, **policy}),
        LakeMetrics(registry),
        offsets_for=lambda consumer: world,
        should_stop=lambda: True,  # no backoff wait in tests
    )
    return handler, registry


def assign(handler: LakeHandler, *tps: tuple[str, int]) -> list[TopicPartition]:
    partitions = [TopicPartition(*tp) for tp in tps]
    handler.assigned(CONSUMER, partitions)
    return partitions


def feed(handler: LakeHandler, tp: tuple[str, int], offsets: range) -> None:
    handler.batch(CONSUMER, cast(Any, [Message(tp, offset) for offset in offsets]))


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"highway_lake_{name}", labels)


def test_assignment_recovers_from_the_manifest_and_seeks_after_it(pool: ThreadPoolExecutor) -> None:
    world = World()
    world.objects[manifest_key("l", *A0)] = Manifest(*A0, committed_offset=9).to_bytes()
    world.objects[ORPHAN] = b"left by a flush that died before its manifest"
    handler, registry = handler_for(world, pool)
    a0, b0 = assign(handler, A0, B0)
    assert (a0.offset, b0.offset) == (10, OFFSET_BEGINNING)
    assert ORPHAN not in world.objects
    assert handler.stats.orphans_deleted == 1
    assert metric(registry, "assigned_partitions") == 2
    feed(handler, A0, range(8, 12))  # 8 and 9 are already in the lake
    assert [row.offset for row in handler.buffers[A0].rows] == [10, 11]
    assert metric(registry, "replayed_skipped_total") == 2
    handler.idle(CONSUMER)  # the assignment's offsets are brought up to the manifest
    assert world.committed == {A0: 10}


def test_age_flushes_a_partition_that_receives_nothing_more(pool: ThreadPoolExecutor) -> None:
    world = World()
    handler, registry = handler_for(world, pool)
    assign(handler, A0)
    feed(handler, A0, range(5))
    handler.idle(CONSUMER)
    assert world.lake_offsets() == {}  # not due yet
    handler.buffers[A0].started_at -= 61  # a minute passes without a record
    handler.idle(CONSUMER)
    assert world.lake_offsets() == {A0: [0, 1, 2, 3, 4]}
    assert world.committed == {A0: 5}
    assert metric(registry, "flushes_total", reason="age") == 1
    assert metric(registry, "rows_flushed_total") == 5
    assert metric(registry, "files_flushed_total") == 1
    assert (metric(registry, "bytes_flushed_total") or 0) > 0
    assert metric(registry, "commit_seconds_count") == 1
    assert metric(registry, "buffered_rows") == 0


def test_rows_and_backpressure_are_flush_reasons(pool: ThreadPoolExecutor) -> None:
    world = World()
    handler, registry = handler_for(world, pool, max_rows=3, max_buffered_bytes=300)
    assign(handler, A0, B0)
    feed(handler, A0, range(3))
    feed(handler, B0, range(2))  # under every per-buffer limit, but the total is over the cap
    handler.idle(CONSUMER)
    assert metric(registry, "flushes_total", reason="rows") == 1
    assert metric(registry, "flushes_total", reason="backpressure") == 1
    assert world.lake_offsets() == {A0: [0, 1, 2], B0: [0, 1]}


def test_a_failing_flush_keeps_the_buffers_and_is_retried(pool: ThreadPoolExecutor) -> None:
    world = World()
    handler, registry = handler_for(world, pool, max_rows=2)
    assign(handler, A0)
    feed(handler, A0, range(4))
    world.fail = ("manifest", "")
    handler.idle(CONSUMER)  # does not raise: the service must not crash on it
    assert [row.offset for row in handler.buffers[A0].rows] == [0, 1, 2, 3]
    assert world.committed == {}
    assert metric(registry, "errors_total", step="flush") == 1
    assert metric(registry, "buffered_rows") == 4
    assert handler.held_records() == 4  # read, not in the lake: still the lake's lag
    world.fail = None
    handler.idle(CONSUMER)
    assert world.lake_offsets() == {A0: [0, 1, 2, 3]}
    assert world.committed == {A0: 4}
    assert handler.held_records() == 0


def test_revoked_partitions_are_flushed_before_they_go_and_the_final_flush_takes_the_rest(
    pool: ThreadPoolExecutor,
) -> None:
    world = World()
    handler, registry = handler_for(world, pool)
    assign(handler, A0, B0)
    feed(handler, A0, range(3))
    feed(handler, B0, range(3))
    handler.revoked(CONSUMER, [TopicPartition(*A0)])
    assert world.lake_offsets() == {A0: [0, 1, 2]}  # committed on the way out, not dropped
    assert world.committed == {A0: 3}
    assert metric(registry, "flushes_total", reason="revoked") == 1
    assert A0 not in handler.buffers
    assert A0 not in handler.committer.manifests
    feed(handler, A0, range(3, 5))  # late records of a revoked partition are not ours
    assert A0 not in handler.buffers
    handler.stopping(CONSUMER)
    assert world.lake_offsets() == {A0: [0, 1, 2], B0: [0, 1, 2]}
    assert metric(registry, "flushes_total", reason="shutdown") == 1
    assert metric(registry, "assigned_partitions") == 1


def test_a_revoke_whose_flush_fails_drops_the_buffers_for_the_next_owner(pool: ThreadPoolExecutor) -> None:
    world = World()
    handler, registry = handler_for(world, pool)
    assign(handler, A0)
    feed(handler, A0, range(3))
    world.fail = ("data", "")
    handler.revoked(CONSUMER, [TopicPartition(*A0)])  # does not raise: the rebalance goes on
    assert A0 not in handler.buffers
    assert A0 not in handler.committer.manifests
    assert metric(registry, "errors_total", step="flush") == 1
    assert world.lake_offsets() == {}


def test_lost_partitions_are_dropped_without_writing_anything(pool: ThreadPoolExecutor) -> None:
    world = World()
    handler, _ = handler_for(world, pool)
    assign(handler, A0, B0)
    feed(handler, A0, range(3))
    world.log.clear()
    handler.lost(CONSUMER, [TopicPartition(*A0)])
    assert world.log == []  # nothing written, nothing committed: another member may own it already
    assert A0 not in handler.buffers
    assert list(handler.committer.manifests) == [B0]


class AssignedConsumer:
    """What ``_reclaim`` asks of the consumer: the group's assignment, and seeks."""

    def __init__(self, *tps: tuple[str, int]) -> None:
        self.tps = list(tps)
        self.seeks: list[tuple[str, int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(*tp) for tp in self.tps]

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))


def test_a_fenced_partition_is_dropped_counted_and_reclaimed_only_if_the_group_still_assigns_it(
    pool: ThreadPoolExecutor,
) -> None:
    world = World()
    handler, registry = handler_for(world, pool)
    assign(handler, A0, B0)
    feed(handler, A0, range(5))
    feed(handler, B0, range(5))
    handler.stopping(CONSUMER)  # 0..4 of both in the lake
    feed(handler, A0, range(5, 8))
    feed(handler, B0, range(5, 8))
    LakeCommitter(SETTINGS, world, world, pool).recover([A0, B0])  # a late claim elsewhere
    handler.buffers[A0].started_at -= 61
    handler.buffers[B0].started_at -= 61
    consumer = AssignedConsumer(A0)  # the group still says A0 is ours; B0 went elsewhere
    handler.idle(cast(Any, consumer))
    assert metric(registry, "fenced_total") == 2
    assert handler.stats.fenced == 2
    assert not handler.buffers
    assert world.lake_offsets() == {A0: list(range(5)), B0: list(range(5))}
    handler.idle(cast(Any, consumer))  # too early to re-claim
    assert consumer.seeks == []
    for tp in handler.fenced_at:
        handler.fenced_at[tp] -= RECLAIM_AFTER_S
    handler.idle(cast(Any, consumer))
    assert consumer.seeks == [(*A0, 5)]
    assert list(handler.committer.manifests) == [A0]
    assert not handler.fenced_at
    stored = Manifest.from_bytes(world.objects[manifest_key("l", *A0)])
    assert isinstance(handler.committer, LakeCommitter)
    assert (stored.epoch, stored.owner) == (3, handler.committer.owner)


def test_s3_retries_are_read_from_the_store_when_scraped() -> None:
    class Store:
        retries = 0

    store = Store()
    registry = CollectorRegistry()
    registry.register(StoreRetries(cast(Any, store)))
    store.retries = 7
    assert registry.get_sample_value("highway_lake_s3_retries_total") == 7


def test_the_stage_puts_its_metrics_on_the_registry_passed_in(tmp_path: Any) -> None:
    registry = CollectorRegistry()
    settings = Settings(lake_uri=f"file://{tmp_path}/lake", lanes=["l"])
    stage = build_stage(settings, registry, overrides={})
    names = {metric.name for metric in registry.collect()}
    expected = {"rows_flushed", "files_flushed", "bytes_flushed", "flushes", "errors", "buffered_rows"}
    expected |= {"buffered_bytes", "s3_retries", "commit_seconds", "assigned_partitions", "fenced"}
    assert {f"highway_lake_{name}" for name in expected} <= names
    assert stage.service.topics == [topic_regex(settings)]
    assert consumer_config(settings)["partition.assignment.strategy"] == "cooperative-sticky"
    assert stage.service.cooperative  # incremental assign/unassign in the rebalance callbacks
    assert stage.service.restart_on_failure  # S3 away in a rebalance callback: back off, never die
    assert not stage.alive()  # built, not started
    assert stage.describe()["alive"] is False
