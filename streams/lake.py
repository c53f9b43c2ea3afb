"""The lake stage: per-event topics → Parquet files in the lake, exactly once.

Delivery guarantee: **exactly once in the lake** (every record of a per-event topic is in exactly one
lake row once its flush completes). The protocol and recovery live in ONE place,
:class:`core.lake.commit.LakeCommitter` (``lake_format=parquet``) or
:class:`core.lake.iceberg_commit.IcebergCommitter` (``iceberg``, one fenced snapshot per table), the
two implementations of ``core.lake.ports.LakeCommitPath``; docs/lake.md has the full argument. This
module runs it on the shared consumer service (``streams.consumer``), subscribed to the single regex
:func:`topic_regex` (new topics seen within ``lake_topic_rescan_s``), with :class:`LakeHandler`:

* partitions come and go incrementally (``cooperative-sticky``). ``assigned``: claimed and recovered,
  read from ``committed_offset + 1``. ``revoked``: flushed before they go (dropped if that fails: the
  next owner replays). ``lost`` (thrown out of the group): dropped, nothing written or committed.
* a partition *fenced* in a flush (another writer claimed it) is dropped; if the group still says it
  is ours ``RECLAIM_AFTER_S`` later (a zombie's late recovery claimed it), it is claimed again.
* ``batch``: buffer the raw records (skipping any at or below a manifest); the commit path decodes
  them at flush time with the wire codec (``codec_for``).
* ``idle`` (after every poll): flush the buffers due by rows, bytes or age, and the largest ones when
  all together exceed ``lake_max_buffered_bytes`` (backpressure: the flush runs before the next poll).
* ``stopping``: a final flush.

Failures: ``LakeStore`` retries S3 errors inside the flush (transient: backoff; permanent, e.g. no
bucket: every ``lake_error_retry_s``, /health degraded), so nothing is committed meanwhile. Other flush
errors are logged, counted and retried with the buffers intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Message, TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from connectors.lake_fs import LakeStore
from connectors.storage_errors import classify
from core.lake.commit import FlushResult
from core.lake.faults import FaultTracker
from core.lake.flush import FlushPolicy, PartitionBuffer, collector_skipping_buffers, split_memory_cap
from core.lake.ports import LakeCommitPath
from core.lake.records import RawRecord
from core.lake.schema import TableSchema
from core.ports import OffsetStore
from core.settings import Settings
from streams.consumer import BatchHandler, ConsumerOffsets, ConsumerService
from streams.health import health_board
from streams.lake_config import SESSION_TIMEOUT_MS, consumer_config, load_overrides, topic_regex
from streams.lake_iceberg import commit_path_for, register_maintenance
from streams.lake_metrics import FaultCounts, LakeMetrics, LakeStats, StoreRetries

log = logging.getLogger(__name__)
TP = tuple[str, int]
MAX_BACKOFF_S = 30.0
SETTLE_RETRY_S = 1.0
# By then a member that was thrown out has been told (partitions lost): only a true owner re-claims.
RECLAIM_AFTER_S = 3 * SESSION_TIMEOUT_MS / 1000


class LakeHandler(BatchHandler):
    """The lake's side of the consumer service (see the module docstring); all on its thread."""

    def __init__(
        self,
        committer: LakeCommitPath,
        policy: FlushPolicy,
        metrics: LakeMetrics,
        offsets_for: Callable[[Consumer], OffsetStore],
        should_stop: Callable[[], bool],
        faults: FaultTracker | None = None,
        lake_uri: str = "the lake",
    ) -> None:
        self.committer = committer
        self.lake_uri = lake_uri
        self.policy = policy
        self.metrics = metrics
        self.offsets_for = offsets_for
        self.should_stop = should_stop
        self.buffers: dict[TP, PartitionBuffer] = {}
        self.fenced_at: dict[TP, float] = {}  # fenced partitions, until re-claimed or taken away
        self.stats = LakeStats()
        self._backoff_s = 0.0
        self._settle_at = 0.0
        self._flushing_since: float | None = None
        self.faults = faults or FaultTracker()

    def held_records(self) -> int:
        """Rows buffered, not in the lake yet: the lake's lag counts records until they are durable."""
        return sum(len(buffer.rows) for buffer in self.buffers.values())

    def degraded(self) -> str | None:
        """Storage/catalog faults (permanent at once, transient once they last), or a flush that has
        not returned for as long (an endpoint that does not answer fails nothing for a while)."""
        reason = self.faults.reason()
        since, now = self._flushing_since, time.monotonic()
        if reason is None and since is not None and now - since > self.faults.transient_after_s:
            reason = f"storage slow or away, transient: a flush to {self.lake_uri} has run {now - since:.0f}s"
        return reason

    def _settle_retry_s(self) -> float:  # a permanent catalog fault (Glue access denied) is retried slowly
        return self.faults.retry_s if self.faults.permanent("catalog") else SETTLE_RETRY_S

    # --- partitions --------------------------------------------------------------------------------
    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._recover(partitions)

    def _recover(self, partitions: list[TopicPartition]) -> None:
        recoveries = self.committer.recover([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            recovery = recoveries.get((tp.topic, tp.partition))
            if recovery is None:  # a topic no table is named after: read from its end, ignored
                tp.offset = OFFSET_END
                continue
            self.buffers.pop((tp.topic, tp.partition), None)
            self.fenced_at.pop((tp.topic, tp.partition), None)
            self.stats.orphans_deleted += len(recovery.orphans)
            self.metrics.orphans.inc(len(recovery.orphans))
            start = recovery.start_offset
            tp.offset = OFFSET_BEGINNING if start is None else start
        self.metrics.assigned.set(len(self.committer.manifests))

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Handed over cleanly: what is buffered is committed first (the next owner goes on from it)."""
        leaving = [(tp.topic, tp.partition) for tp in partitions]
        due = {tp: "revoked" for tp in leaving if tp in self.buffers and self.buffers[tp].rows}
        try:
            self._flush(consumer, due)
        except Exception:
            self._count_error("flush")
            log.exception("lake: flush of %d revoked partitions failed; the owner replays them", len(due))
        self._drop(leaving)

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Thrown out of the group: another member may own them already — nothing is written."""
        self._drop([(tp.topic, tp.partition) for tp in partitions])

    def _drop(self, partitions: list[TP]) -> None:
        for tp in partitions:
            self.buffers.pop(tp, None)
            self.fenced_at.pop(tp, None)
        self.committer.release(partitions)
        self.metrics.assigned.set(len(self.committer.manifests))
        self._update_gauges()

    def _note_fenced(self, consumer: Consumer) -> None:
        """Partitions another writer took in the last flush: their rows are dropped. One the commit
        path still holds (Iceberg: repositioned on the owner's offsets) is read again from there;
        one it released (parquet: a new claim is needed) waits for ``_reclaim``."""
        now = time.monotonic()
        for tp, start in self.committer.take_fenced().items():
            self.buffers.pop(tp, None)
            self.stats.fenced += 1
            self.metrics.fenced.inc()
            if tp not in self.committer.manifests:
                self.fenced_at[tp] = now
                continue
            try:
                consumer.seek(TopicPartition(*tp, OFFSET_BEGINNING if start is None else start))
            except KafkaException as exc:  # not ours any more: the revocation comes with the next poll
                log.info("lake: no seek for fenced %s[%s]: %s", *tp, exc)
        self.metrics.assigned.set(len(self.committer.manifests))

    def _reclaim(self, consumer: Consumer, now: float) -> None:
        """Fenced partitions the group still assigns to this member (see ``RECLAIM_AFTER_S``)."""
        due = {tp for tp, at in self.fenced_at.items() if now - at >= RECLAIM_AFTER_S}
        self.fenced_at = {tp: at for tp, at in self.fenced_at.items() if tp not in due}
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()} if due else set()
        ours = [TopicPartition(*tp) for tp in sorted(due & assigned) if tp not in self.committer.manifests]
        if ours:
            self._recover_and_seek(consumer, ours)

    def _recover_and_seek(self, consumer: Consumer, ours: list[TopicPartition]) -> None:
        log.warning("lake: re-claiming %d fenced partitions the group still assigns here", len(ours))
        self._recover(ours)
        for partition in ours:
            consumer.seek(partition)

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
            buffer.add(RawRecord(partition, offset, message.timestamp()[1], message.value() or b""), now)

    def idle(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if self.fenced_at:
            self._reclaim(consumer, now)
        due = self._due(now)
        if due:
            self._flush_or_back_off(consumer, due)
        elif self.committer.unsettled and now >= self._settle_at:
            step = self.committer.settle(self.offsets_for(consumer))
            if step is not None:
                self._count_error(step)
                self._settle_at = now + self._settle_retry_s()
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
            self.faults.succeeded("storage", "flush")
        except Exception as exc:
            # Errors the store did not retry itself (the Iceberg edge, the catalog) reach /health too.
            fault = classify(exc, self.lake_uri)
            self.faults.failed("storage", "flush", fault)
            self._count_error("flush")
            longest = self.faults.retry_s if fault.kind == "permanent" else MAX_BACKOFF_S
            self._backoff_s = min(max(1.0, self._backoff_s * 2), longest)
            retry = f"{fault.kind}; buffers kept, retrying in {self._backoff_s:.0f}s"
            log.exception("lake flush: %s (%s)", fault.describe(), retry)
            deadline = time.monotonic() + self._backoff_s
            while time.monotonic() < deadline and not self.should_stop():
                time.sleep(0.1)

    def _flush(self, consumer: Consumer, due: dict[TP, str]) -> None:
        if not due:
            return
        started = time.perf_counter()
        self._flushing_since = time.monotonic()
        try:
            with collector_skipping_buffers():
                result = self.committer.flush([self.buffers[tp] for tp in due], self.offsets_for(consumer))
        finally:
            self._flushing_since = None
            self._note_fenced(consumer)  # also when the flush failed after fencing some partitions
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self._record(result, due)
        log.debug("lake flush %s: %s", sorted(set(due.values())), result)

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
            self._settle_at = time.monotonic() + self._settle_retry_s()

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
    faults = FaultTracker(retry_s=settings.lake_error_retry_s)
    store = LakeStore(settings, should_stop=stop, faults=faults)
    pool = ThreadPoolExecutor(max_workers=settings.lake_flush_concurrency, thread_name_prefix="lake-io")
    overrides = load_overrides() if overrides is None else overrides
    committer = commit_path_for(settings, store, pool, overrides, faults)
    # Iceberg's share of the cap for its metadata cache is taken when its catalog opens.
    memory = split_memory_cap(settings.lake_max_buffered_bytes, settings.lake_format)
    policy = FlushPolicy(
        settings.lake_flush_rows, settings.lake_flush_bytes, settings.lake_flush_age_s, memory.buffers
    )
    handler = LakeHandler(
        committer, policy, LakeMetrics(registry), ConsumerOffsets, stop, faults, lake_uri=settings.lake_uri
    )
    registry.register(StoreRetries(store))
    registry.register(FaultCounts(faults))
    service = ConsumerService(
        "lake",
        consumer_config(settings),
        [topic_regex(settings)],
        handler,
        batch_wait_s=0.2,
        # An error outside a flush (S3 away while a rebalance recovers Iceberg offsets) restarts the
        # consumer after a backoff — its partitions lost, replayed from the lake — never the worker.
        restart_on_failure=True,
        stall_s=settings.kafka_consumer_stall_s,
        **service_kwargs,
    )
    stop.service = service
    handler.metrics.lag.set_function(lambda: service.lag)
    return LakeStage(service, handler, store)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Run the lake stage with the app and expose its state at ``/lake``.

    The service is a direct dependency of the app (started with its web server), not an
    ``@app.service`` (started only once faust's own consumer group has settled): the stage does not
    use faust's consumer, and after a kill -9 faust waits out the dead member's session first,
    which would only delay the lake.
    """
    stage = build_stage(settings, registry, beacon=app.beacon)
    health_board(app).add(stage.service.name, stage.service.health, lambda: stage.service.started)
    app.add_dependency(stage.service)
    register_maintenance(app, settings)
    log.info("lake: consuming %s into %s", topic_regex(settings), settings.lake_uri)

    @app.page("/lake")
    async def lake_state(web: View, request: Request) -> Response:
        return web.json(stage.describe())
