"""The lake stage: per-event topics → Parquet files in the lake, exactly once.

Delivery guarantee: **exactly once in the lake** (every Kafka record of a per-event topic appears in
exactly one lake row once its flush completes). The protocol — data files, then ``_schema.json``,
then the partitions' manifests, then the catalog, and only then the Kafka offsets; recovery on
assignment deletes the files above the manifest's committed offset and resumes after it — lives in
ONE place, :class:`core.lake.commit.LakeCommitter` (``flush``/``settle``, and
:func:`core.lake.commit.recover_partition`); docs/lake.md has the full argument. That is
``lake_format=parquet``; for ``iceberg`` the handler drives the same Protocol's other implementation
(``core.lake.ports.LakeCommitPath``, chosen in ``streams.lake_iceberg``): one snapshot per table.

This module runs it on the shared consumer service (``streams.consumer``), subscribed to the single
regex :func:`topic_regex` (new topics are seen within ``lake_topic_rescan_s``), with
:class:`LakeHandler` as its handler:

* ``assigned``: recovery from the manifests; reading starts at ``committed_offset + 1`` (or the
  beginning). ``revoked``/``lost``: the partitions' buffers are dropped — the next owner replays them.
* ``batch``: decode and buffer (records at or below a manifest are skipped if ever seen again).
* ``idle`` (after every poll, with or without messages): flush the buffers that are due — rows,
  bytes, age (so an idle partition still flushes on time), and the largest ones when all buffers
  together exceed ``lake_max_buffered_bytes`` (backpressure: the flush runs before the next poll).
* ``stopping``: a final flush.

Failures: ``LakeStore`` retries transient S3 errors with backoff inside the flush, so consumption
pauses and nothing is committed meanwhile. Any other error of a flush is logged, counted and retried
after a backoff with the buffers intact (the commit path empties a buffer only once its manifest is
written). An error during assignment, or a fatal Kafka error, crashes the service (the worker
restarts and recovers from the manifests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.kafka_config import confluent_config, subscription_regex
from connectors.lake_fs import LakeStore
from core.lake.commit import FlushResult
from core.lake.flush import FlushPolicy, PartitionBuffer
from core.lake.ports import LakeCommitPath
from core.lake.records import decode
from core.lake.schema import TableSchema, schema_from_avro
from core.ports import OffsetStore
from core.settings import Settings
from schemas import EVENT_SCHEMAS_DIR, event_schemas
from streams.consumer import BatchHandler, ConsumerOffsets, ConsumerService
from streams.health import health_board
from streams.lake_iceberg import commit_path_for, register_maintenance, resume_fenced

log = logging.getLogger(__name__)
TP = tuple[str, int]
MAX_BACKOFF_S = 30.0
SETTLE_RETRY_S = 1.0


def load_overrides(directory: Path = EVENT_SCHEMAS_DIR) -> dict[str, TableSchema]:
    """Avro schemas in ``schemas/events/<table>.avsc`` that override inference for that table."""
    return {table: schema_from_avro(schema) for table, schema in event_schemas(directory).items()}


def lake_group_id(settings: Settings) -> str:
    """The lake consumer group; distinct from every faust app group (which use their own protocol)."""
    return f"{settings.app_id}.lake-sink"


def topic_regex(settings: Settings) -> str:
    """librdkafka regex subscription matching every lane's per-event topics."""
    return subscription_regex([settings.event_topic_pattern(lane) for lane in settings.lanes])


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Manual offsets (committed by the commit path only); a long poll interval because a flush
    blocks the consumer thread for as long as S3 is away."""
    return confluent_config(
        settings,
        **{
            "group.id": lake_group_id(settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": int(settings.lake_topic_rescan_s * 1000),
            "max.poll.interval.ms": 600_000,
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.max.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 32 * 1024,
        },
    )


class LakeMetrics:
    """The lake's Prometheus metrics, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(f"highway_lake_{name}", doc, list(labels), registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"highway_lake_{name}", doc, registry=registry)

        self.rows = counter("rows_flushed", "Rows written to the lake (vouched for by a manifest)")
        self.files = counter("files_flushed", "Parquet files written by completed flushes")
        self.bytes = counter("bytes_flushed", "Parquet bytes written by completed flushes")
        self.flushes = counter("flushes", "Buffers flushed, by reason", ["reason"])
        self.errors = counter("errors", "Failed commit steps (flush, catalog, offsets), retried", ["step"])
        self.orphans = counter("orphans_deleted", "Files above a manifest deleted on assignment")
        self.skipped = counter("replayed_skipped", "Records at or below a manifest seen again")
        self.buffered_rows = gauge("buffered_rows", "Rows buffered, not yet in the lake")
        self.buffered_bytes = gauge("buffered_bytes", "Estimated memory of the buffered rows")
        self.assigned = gauge("assigned_partitions", "Topic-partitions assigned to this worker")
        self.commit_seconds = Histogram(
            "highway_lake_commit_seconds",
            "Duration of a flush through the whole commit path",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )


class StoreRetries(Collector):
    """``highway_lake_s3_retries_total``, read from the store's own count when scraped."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        doc = "Lake storage calls retried after a transient error"
        yield CounterMetricFamily("highway_lake_s3_retries", doc, self.store.retries)


@dataclass
class LakeStats:
    """What the ``/lake`` page shows (the metrics hold the same figures for Prometheus)."""

    rows: int = 0
    files: int = 0
    flushes: int = 0
    skipped_replayed: int = 0
    orphans_deleted: int = 0
    fenced: int = 0
    errors: int = 0
    last_flush_monotonic: float = 0.0
    flush_reasons: dict[str, int] = field(default_factory=dict)


class LakeHandler(BatchHandler):
    """The lake's side of the consumer service (see the module docstring); all on its thread."""

    def __init__(
        self,
        committer: LakeCommitPath,
        policy: FlushPolicy,
        metrics: LakeMetrics,
        offsets_for: Callable[[Consumer], OffsetStore],
        should_stop: Callable[[], bool],
    ) -> None:
        self.committer = committer
        self.policy = policy
        self.metrics = metrics
        self.offsets_for = offsets_for
        self.should_stop = should_stop
        self.buffers: dict[TP, PartitionBuffer] = {}
        self.stats = LakeStats()
        self._backoff_s = 0.0
        self._settle_at = 0.0

    # --- partitions --------------------------------------------------------------------------------
    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        recoveries = self.committer.recover([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            recovery = recoveries[(tp.topic, tp.partition)]
            self.buffers.pop((tp.topic, tp.partition), None)
            self.stats.orphans_deleted += len(recovery.orphans)
            self.metrics.orphans.inc(len(recovery.orphans))
            start = recovery.start_offset
            tp.offset = OFFSET_BEGINNING if start is None else start
        self.metrics.assigned.set(len(self.committer.manifests))

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Unflushed rows are dropped: the next owner replays them from the manifest.
        released = [(tp.topic, tp.partition) for tp in partitions]
        for tp in released:
            self.buffers.pop(tp, None)
        self.committer.release(released)
        self.metrics.assigned.set(len(self.committer.manifests))
        self._update_gauges()

    # --- records -------------------------------------------------------------------------------------
    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        now = time.monotonic()
        manifests = self.committer.manifests
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None
            assert partition is not None
            assert offset is not None
            tp = (topic, partition)
            manifest = manifests.get(tp)
            if manifest is None:
                continue  # not (or no longer) assigned to us: the owner reads it
            buffer = self.buffers.get(tp)
            if buffer is None:
                buffer = self.buffers[tp] = PartitionBuffer(topic, partition)
            if offset <= manifest.committed_offset or (buffer.rows and offset <= buffer.rows[-1].offset):
                self.stats.skipped_replayed += 1
                self.metrics.skipped.inc()
                continue
            buffer.add(decode(partition, offset, message.timestamp()[1], message.value() or b""), now)

    def idle(self, consumer: Consumer) -> None:
        now = time.monotonic()
        due = self._due(now)
        if due:
            self._flush_or_back_off(consumer, due)
        elif self.committer.unsettled and now >= self._settle_at:
            step = self.committer.settle(self.offsets_for(consumer))
            if step is not None:
                self._count_error(step)
                self._settle_at = now + SETTLE_RETRY_S
        self._update_gauges()

    def stopping(self, consumer: Consumer) -> None:
        due = {tp: "shutdown" for tp, buffer in self.buffers.items() if buffer.rows}
        try:
            self._flush(consumer, due)
        except Exception:
            log.exception("lake: final flush failed; its rows are replayed from the manifests")
        self._update_gauges()

    # --- flushing ------------------------------------------------------------------------------------
    def _due(self, now: float) -> dict[TP, str]:
        due: dict[TP, str] = {}
        for tp, buffer in self.buffers.items():
            reason = self.policy.reason(buffer, now)
            if reason:
                due[tp] = reason
        for buffer in self.policy.over_cap([b for tp, b in self.buffers.items() if tp not in due]):
            due[(buffer.topic, buffer.partition)] = "backpressure"
        return due

    def _flush_or_back_off(self, consumer: Consumer, due: dict[TP, str]) -> None:
        """Flush; on an unexpected error keep the buffers and wait (not polling, so consumption
        pauses instead of growing the buffers) before the next attempt."""
        try:
            self._flush(consumer, due)
            self._backoff_s = 0.0
        except Exception:
            self._count_error("flush")
            self._backoff_s = min(max(1.0, self._backoff_s * 2), MAX_BACKOFF_S)
            log.exception("lake: flush failed; buffers kept, retrying in %.0fs", self._backoff_s)
            deadline = time.monotonic() + self._backoff_s
            while time.monotonic() < deadline and not self.should_stop():
                time.sleep(0.1)

    def _flush(self, consumer: Consumer, due: dict[TP, str]) -> None:
        if not due:
            return
        started = time.perf_counter()
        result = self.committer.flush([self.buffers[tp] for tp in due], self.offsets_for(consumer))
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self._record(result, due)
        self._resume_fenced(consumer)
        log.debug("lake flush %s: %s", sorted(set(due.values())), result)

    def _resume_fenced(self, consumer: Consumer) -> None:
        fenced = resume_fenced(self.committer, consumer, self.buffers)
        if fenced:
            self.stats.fenced += fenced
            self._count_error("fenced")

    def _record(self, result: FlushResult, due: dict[TP, str]) -> None:
        if result.partitions == 0:
            return
        for reason in due.values():
            self.stats.flush_reasons[reason] = self.stats.flush_reasons.get(reason, 0) + 1
            self.metrics.flushes.labels(reason).inc()
        self.stats.rows += result.rows
        self.stats.files += result.files
        self.stats.flushes += 1
        self.stats.last_flush_monotonic = time.monotonic()
        self.metrics.rows.inc(result.rows)
        self.metrics.files.inc(result.files)
        self.metrics.bytes.inc(result.bytes)
        if result.unsettled is not None:
            self._count_error(result.unsettled)
            self._settle_at = time.monotonic() + SETTLE_RETRY_S

    def _count_error(self, step: str) -> None:
        self.stats.errors += 1
        self.metrics.errors.labels(step).inc()

    def _update_gauges(self) -> None:
        self.metrics.buffered_rows.set(sum(len(buffer.rows) for buffer in self.buffers.values()))
        self.metrics.buffered_bytes.set(sum(buffer.size_bytes for buffer in self.buffers.values()))


class _StopSignal:
    """``should_stop`` for the store and the handler's backoff: the service is stopping."""

    def __init__(self) -> None:
        self.service: ConsumerService | None = None

    def __call__(self) -> bool:
        return self.service is not None and self.service.should_stop


@dataclass
class LakeStage:
    """The lake stage of one worker: its consumer service, handler and store."""

    service: ConsumerService
    handler: LakeHandler
    store: LakeStore

    def alive(self) -> bool:
        """The consumer service runs and has not failed."""
        service = self.service
        return service.started and not service.should_stop and service.failure is None

    def describe(self) -> dict[str, Any]:
        handler, stats = self.handler, self.handler.stats
        buffers = list(handler.buffers.values())  # a copy: the consumer thread may change the dict
        return {
            "alive": self.alive(),
            "assigned": len(handler.committer.manifests),
            "buffered_rows": sum(len(buffer.rows) for buffer in buffers),
            "buffered_bytes": sum(buffer.size_bytes for buffer in buffers),
            "rows": stats.rows,
            "files": stats.files,
            "flushes": stats.flushes,
            "flush_reasons": dict(stats.flush_reasons),
            "skipped_replayed": stats.skipped_replayed,
            "orphans_deleted": stats.orphans_deleted,
            "fenced": stats.fenced,
            "s3_retries": self.store.retries,
            "errors": stats.errors,
        }


def build_stage(
    settings: Settings,
    registry: CollectorRegistry,
    overrides: dict[str, TableSchema] | None = None,
    **service_kwargs: Any,
) -> LakeStage:
    """Build the real edges (store, catalog, pool, consumer offsets) and the service around them."""
    stop = _StopSignal()
    store = LakeStore(settings, should_stop=stop)
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lake-io")
    overrides = load_overrides() if overrides is None else overrides
    committer = commit_path_for(settings, store, pool, overrides)
    policy = FlushPolicy(
        settings.lake_flush_rows,
        settings.lake_flush_bytes,
        settings.lake_flush_age_s,
        settings.lake_max_buffered_bytes,
    )
    handler = LakeHandler(committer, policy, LakeMetrics(registry), ConsumerOffsets, stop)
    registry.register(StoreRetries(store))
    service = ConsumerService(
        "lake",
        consumer_config(settings),
        [topic_regex(settings)],
        handler,
        batch_wait_s=0.2,
        **service_kwargs,
    )
    stop.service = service
    return LakeStage(service, handler, store)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Run the lake stage with the app and expose its state at ``/lake``.

    The service is a direct dependency of the app (started with its web server), not an
    ``@app.service`` (started only once faust's own consumer group has settled): the stage does not
    use faust's consumer, and after a kill -9 faust waits out the dead member's session first,
    which would only delay the lake.
    """
    stage = build_stage(settings, registry, beacon=app.beacon)
    health_board(app).add(stage.service.name, stage.service.health)
    app.add_dependency(stage.service)
    register_maintenance(app, settings)
    log.info("lake: consuming %s into %s", topic_regex(settings), settings.lake_uri)

    @app.page("/lake")
    async def lake_state(web: View, request: Request) -> Response:
        return web.json(stage.describe())
