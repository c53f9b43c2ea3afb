"""The lake stage: per-event topics → Parquet files in the lake, exactly once.

Delivery guarantee: **exactly once in the lake** (every Kafka record of a per-event topic appears in
exactly one lake row once its flush completes), by this protocol — the single commit path is
:meth:`LakeSink.flush`; docs/lake.md has the full argument:

1. Records of each topic-partition are buffered; a buffer flushes on rows, bytes or age (age is
   checked on every poll, so an idle partition still flushes), and when the total buffered bytes
   exceed the cap (backpressure: the loop flushes before it reads more).
2. A flush writes one Parquet file per Hive partition value. The key is a pure function of
   (topic, partition, first offset of the file's rows, partition value) — never a uuid or the clock.
3. Then the table's ``_schema.json`` when it changed, **then** the partition's manifest
   ``committed_offset = last flushed offset``. The manifest is written only after its files are.
4. Only then are Kafka offsets committed (they are a convenience for lag monitoring; the manifest
   is the truth).
5. On partition assignment the sink reads the manifest, deletes data files of that partition whose
   first offset is above ``committed_offset`` (orphans of a flush that crashed before its manifest)
   and seeks to ``committed_offset + 1``. Records at or below it are skipped if ever seen again.

Transient S3 errors are retried with backoff inside the flush; the loop does not poll meanwhile, so
consumption pauses and nothing is lost. faust's own pattern subscription does not work on its
aiokafka driver (``subscribe`` takes names only), so the loop uses a confluent-kafka consumer with a
regex subscription (new topics are seen within ``lake_topic_rescan_s``), run in a thread owned by a
faust service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import mode
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from connectors.glue import Catalog, catalog_for
from connectors.kafka_config import confluent_config
from connectors.lake_fs import LakeStore
from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import FilePlan, FlushPolicy, PartitionBuffer, plan_files
from core.lake.layout import PartitionValue, manifest_key, schema_key, table_name, table_prefix
from core.lake.manifest import Manifest, orphan_files
from core.lake.records import decode
from core.lake.schema import TableSchema, schema_from_avro
from core.settings import Settings
from schemas import EVENT_SCHEMAS_DIR, event_schemas

log = logging.getLogger(__name__)
TP = tuple[str, int]


def load_overrides(directory: Path = EVENT_SCHEMAS_DIR) -> dict[str, TableSchema]:
    """Avro schemas in ``schemas/events/<table>.avsc`` that override inference for that table."""
    return {table: schema_from_avro(schema) for table, schema in event_schemas(directory).items()}


def lake_group_id(settings: Settings) -> str:
    """The lake consumer group; distinct from every faust app group (which use their own protocol)."""
    return f"{settings.app_id}.lake-sink"


def topic_regex(settings: Settings) -> str:
    """librdkafka regex subscription matching every lane's per-event topics."""
    alternatives = [settings.event_topic_pattern(lane).replace("\\-", "-") for lane in settings.lanes]
    return "^(" + "|".join(alternatives) + ")$"


@dataclass
class LakeStats:
    rows: int = 0
    files: int = 0
    flushes: int = 0
    skipped_replayed: int = 0
    orphans_deleted: int = 0
    errors: int = 0
    backpressure_flushes: int = 0
    last_flush_monotonic: float = 0.0
    flush_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Flushing:
    buffer: PartitionBuffer
    lane: str
    table: str
    plans: list[FilePlan]
    manifest: Manifest


class LakeSink:
    """The consumer loop of the lake stage (see the module docstring for the protocol)."""

    def __init__(self, settings: Settings, overrides: dict[str, TableSchema] | None = None) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self.store = LakeStore(settings, should_stop=self._stop.is_set)
        self.policy = FlushPolicy(
            settings.lake_flush_rows,
            settings.lake_flush_bytes,
            settings.lake_flush_age_s,
            settings.lake_max_buffered_bytes,
        )
        self.catalog: Catalog | None = catalog_for(settings)
        self.overrides = load_overrides() if overrides is None else overrides
        self.buffers: dict[TP, PartitionBuffer] = {}
        self.manifests: dict[TP, Manifest] = {}
        self.schemas: dict[tuple[str, str], TableSchema] = {}
        self.stored_schemas: dict[tuple[str, str], bytes] = {}
        self.stats = LakeStats()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lake-io")
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._to_commit: list[TopicPartition] = []

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self.run, name="lake-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=False)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop: poll a batch, buffer it, flush what is due. Survives every transient error."""
        consumer = Consumer(
            confluent_config(
                self.settings,
                **{
                    "group.id": lake_group_id(self.settings),
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "topic.metadata.refresh.interval.ms": int(self.settings.lake_topic_rescan_s * 1000),
                    "max.poll.interval.ms": 600_000,
                    "session.timeout.ms": 6_000,
                    "heartbeat.interval.ms": 1_000,
                    "fetch.max.bytes": 16 * 1024 * 1024,
                    "queued.max.messages.kbytes": 32 * 1024,
                },
            )
        )
        self._consumer = consumer
        consumer.subscribe([topic_regex(self.settings)], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("lake sink consuming %s into %s", topic_regex(self.settings), self.settings.lake_uri)
        try:
            while not self._stop.is_set():
                try:
                    self._poll_once(consumer)
                except KafkaException as exc:
                    log.warning("lake consumer error: %s", exc)
                    self._stop.wait(0.5)
                except Exception:
                    # Never let one bad moment end the sink: the buffers are only cleared by a
                    # completed flush, so the next round retries it; nothing is committed meanwhile.
                    self.stats.errors += 1
                    log.exception("lake sink error; retrying")
                    self._stop.wait(1.0)
            self.flush(list(self.buffers.values()), "shutdown")
        except Exception:
            log.exception("lake sink stopped by an unexpected error")
            raise
        finally:
            consumer.close()

    def _poll_once(self, consumer: Consumer) -> None:
        messages = consumer.consume(num_messages=5000, timeout=0.2)
        if self._to_commit:
            self._commit(self._to_commit)
            self._to_commit = []
        now = time.monotonic()
        for message in messages:
            self._buffer(message, now)
        due: dict[TP, str] = {}
        for tp, buffer in self.buffers.items():
            reason = self.policy.reason(buffer, now)
            if reason:
                due[tp] = reason
        for buffer in self.policy.over_cap([b for tp, b in self.buffers.items() if tp not in due]):
            due[(buffer.topic, buffer.partition)] = "backpressure"
        if due:
            for reason in due.values():
                self.stats.flush_reasons[reason] = self.stats.flush_reasons.get(reason, 0) + 1
            self.flush([self.buffers[tp] for tp in due], ",".join(sorted(set(due.values()))))

    def _buffer(self, message: Message, now: float) -> None:
        if message.error():
            log.warning("lake consumer: %s", message.error())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None
        assert partition is not None
        assert offset is not None
        tp = (topic, partition)
        manifest = self.manifests.get(tp)
        if manifest is None:
            return  # not (or no longer) assigned to us: the owner will read it
        buffer = self.buffers.setdefault(tp, PartitionBuffer(topic, partition))
        if offset <= manifest.committed_offset or (buffer.rows and offset <= buffer.rows[-1].offset):
            self.stats.skipped_replayed += 1
            return
        _, ts = message.timestamp()
        buffer.add(decode(partition, offset, ts, message.value() or b""), now)

    # --- rebalance: recovery from the manifest ---------------------------------------------------
    def _resolve(self, topic: str) -> tuple[str, str]:
        for lane in self.settings.lanes:
            name = table_name(topic, self.settings.topic_per_event, lane)
            if name is not None:
                return lane, name
        raise ValueError(f"topic {topic!r} is not a per-event topic of lanes {self.settings.lanes}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def recover(tp: TopicPartition) -> Manifest:
            lane, table = self._resolve(tp.topic)
            raw = self.store.get(manifest_key(lane, tp.topic, tp.partition))
            manifest = Manifest.from_bytes(raw) if raw else Manifest(tp.topic, tp.partition)
            listing = self.store.list_keys(table_prefix(lane, table) + "/")
            for orphan in orphan_files(manifest, listing):
                log.info("lake: deleting orphan %s (above offset %s)", orphan, manifest.committed_offset)
                self.store.delete(orphan)
                self.stats.orphans_deleted += 1
            return manifest

        # The S3 round trips of many partitions overlap; a rebalance over hundreds of topics is quick.
        for tp, manifest in zip(partitions, self._pool.map(recover, partitions), strict=True):
            self.manifests[(tp.topic, tp.partition)] = manifest
            self.buffers.pop((tp.topic, tp.partition), None)
            tp.offset = manifest.next_offset if manifest.committed_offset >= 0 else OFFSET_BEGINNING
        consumer.assign(partitions)
        # Bring the group's committed offsets up to the manifests (a crash between manifest and
        # commit leaves them behind); done from the poll loop, outside the rebalance callback.
        self._to_commit = [
            TopicPartition(tp.topic, tp.partition, tp.offset) for tp in partitions if tp.offset >= 0
        ]

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Unflushed rows are dropped: the next owner replays them from the manifest.
        for tp in partitions:
            self.buffers.pop((tp.topic, tp.partition), None)
            self.manifests.pop((tp.topic, tp.partition), None)
        consumer.unassign()

    # --- the commit path -----------------------------------------------------------------------
    def _table_schema(self, lane: str, table: str) -> TableSchema:
        key = (lane, table)
        schema = self.schemas.get(key)
        if schema is None:
            override = self.overrides.get(table)
            schema = TableSchema(dict(override.columns), override.declared) if override else TableSchema()
            stored = self.store.get(schema_key(lane, table))
            if stored:
                schema.merge(TableSchema.from_bytes(stored))
                self.stored_schemas[key] = stored
            self.schemas[key] = schema
        return schema

    def flush(self, buffers: Iterable[PartitionBuffer], reason: str) -> None:
        """Flush buffers: data files, then schemas, then manifests, then Kafka offsets.

        Every write retries until it succeeds (or the worker stops); the buffers are emptied only
        at the end, so a failure anywhere leaves them for the next attempt or for replay.
        """
        buffers = [b for b in buffers if b.rows and (b.topic, b.partition) in self.manifests]
        tables = {self._resolve(b.topic) for b in buffers}
        list(self._pool.map(lambda key: self._table_schema(*key), tables - set(self.schemas)))
        work: list[_Flushing] = []
        for buffer in buffers:
            tp = (buffer.topic, buffer.partition)
            manifest = self.manifests.get(tp)
            if not buffer.rows or manifest is None:
                continue
            lane, table = self._resolve(buffer.topic)
            schema = self._table_schema(lane, table)
            first = buffer.rows[0].offset
            schema.observe(
                (row.properties for row in buffer.rows), f"{buffer.topic}[{buffer.partition}]@{first}"
            )
            plans = plan_files(lane, table, buffer.rows, self.settings.lake_partition_time)
            work.append(_Flushing(buffer, lane, table, plans, manifest))
        if not work:
            return
        # 1. data files
        compression = self.settings.lake_compression
        files = [(item, plan) for item in work for plan in item.plans]

        def write_file(pair: tuple[_Flushing, FilePlan]) -> None:
            item, plan = pair
            schema = self.schemas[(item.lane, item.table)]
            self.store.put(plan.key, parquet_bytes(build_table(plan.rows, schema), compression))

        list(self._pool.map(write_file, files))

        # 2. table schemas that changed
        def write_schema(key: tuple[str, str]) -> None:
            encoded = self.schemas[key].to_bytes(key[1])
            if self.stored_schemas.get(key) != encoded:
                self.store.put(schema_key(*key), encoded)
                self.stored_schemas[key] = encoded

        list(self._pool.map(write_schema, tables))
        # 3. manifests — only now do the files count as in the lake
        advanced = {
            id(item): item.manifest.advanced(
                item.buffer.rows[-1].offset, len(item.buffer.rows), (plan.key for plan in item.plans)
            )
            for item in work
        }

        def write_manifest(item: _Flushing) -> None:
            self.store.put(
                manifest_key(item.lane, item.buffer.topic, item.buffer.partition),
                advanced[id(item)].to_bytes(),
            )

        list(self._pool.map(write_manifest, work))
        # 4. catalog (Athena sees new tables/partitions) and Kafka offsets
        if self.catalog is not None:
            self._register(work)
        offsets = []
        for item in work:
            tp = (item.buffer.topic, item.buffer.partition)
            self.manifests[tp] = advanced[id(item)]
            offsets.append(TopicPartition(tp[0], tp[1], advanced[id(item)].next_offset))
            self.stats.rows += len(item.buffer.rows)
            self.stats.files += len(item.plans)
            item.buffer.take()
        self.stats.flushes += 1
        self.stats.last_flush_monotonic = time.monotonic()
        self._commit(offsets)
        log.debug("lake flush (%s): %d partitions, %d files", reason, len(work), len(files))

    def _register(self, work: list[_Flushing]) -> None:
        """Register new tables and partitions, one task per table so the catalog round trips overlap."""
        catalog = self.catalog
        assert catalog is not None
        values: dict[tuple[str, str], list[PartitionValue]] = {}
        for item in work:
            values.setdefault((item.lane, item.table), []).extend(plan.value for plan in item.plans)

        def register_table(key: tuple[str, str]) -> None:
            lane, table = key
            try:
                catalog.ensure_table(lane, table, self.schemas[key])
                catalog.ensure_partitions(lane, table, values[key])
            except Exception as exc:  # the catalog is metadata; the lake itself is already consistent
                log.warning(
                    "lake: catalog registration of %s failed, retried on the next flush: %s", table, exc
                )
                catalog.forget(lane, table)

        list(self._pool.map(register_table, values))

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if self._consumer is None:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the manifest already records these offsets; the next commit catches up.
            log.info("lake: offset commit deferred: %s", exc)

    def describe(self) -> dict[str, Any]:
        return {
            "alive": self.alive(),
            "assigned": len(self.manifests),
            "buffered_rows": sum(len(buffer.rows) for buffer in self.buffers.values()),
            "buffered_bytes": sum(buffer.size_bytes for buffer in self.buffers.values()),
            "rows": self.stats.rows,
            "files": self.stats.files,
            "flushes": self.stats.flushes,
            "flush_reasons": self.stats.flush_reasons,
            "skipped_replayed": self.stats.skipped_replayed,
            "orphans_deleted": self.stats.orphans_deleted,
            "s3_retries": self.store.retries,
            "errors": self.stats.errors,
        }


class LakeService(mode.Service):
    """Owns the sink's thread: started and stopped with the app."""

    def __init__(self, sink: LakeSink, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sink = sink

    async def on_start(self) -> None:
        self.sink.start()

    async def on_stop(self) -> None:
        await self.loop.run_in_executor(None, self.sink.stop)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Run the lake sink with the app and expose its state at ``/lake``.

    The service is a direct dependency of the app (started with its web server), not an
    ``@app.service`` (started only once faust's own consumer group has settled): the sink does not
    use faust's consumer, and after a kill -9 faust waits out the dead member's session first,
    which would only delay the lake.
    """
    sink = LakeSink(settings)
    app.add_dependency(LakeService(sink, beacon=app.beacon))

    @app.page("/lake")
    async def lake_state(web: View, request: Request) -> Response:
        return web.json(sink.describe())
