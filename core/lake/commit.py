"""The lake's one commit path and its recovery: how buffered rows become exactly-once lake rows.

Delivery guarantee: **exactly once in the lake** — every Kafka record of a per-event topic ends up in
exactly one lake row once its flush completed, across crashes, retries and rebalances. A flush
(:meth:`LakeCommitter.flush`) is a sequence of steps; each step is a barrier (every call of it has
ended before the next step starts), and a failure ends the flush at that step:

1. **data files** — one Parquet file per (topic-partition, Hive partition value), at a key that is a
   pure function of the data (first offset of the file's rows, partition value), so a replay
   rewrites the same keys instead of adding new ones;
2. **table schemas** — ``_schema.json`` of each table whose schema changed;
3. **manifests** — per topic-partition ``committed_offset = last flushed offset``, written only
   after every file it vouches for. A partition's rows count as in the lake from here on: its
   buffer is emptied and its manifest adopted as soon as its own manifest is written;
4. **catalog** — tables/partitions registered (Glue); a failure keeps them pending;
5. **Kafka offsets** — ``committed_offset + 1``, only once everything before succeeded. Offsets are
   a convenience (lag monitoring); the manifest is the truth.

A failure before step 3 leaves the buffers as they were: the caller retries the flush (same keys,
overwritten) or, after a crash, the next owner replays from the manifest. Steps 4 and 5 never lose
data; what they could not do stays pending and is retried by :meth:`LakeCommitter.settle`.

Recovery on assignment (:func:`recover_partition`): read the manifest, delete the data files of that
partition whose first offset is above ``committed_offset`` (orphans of a flush that died before its
manifest), and resume at ``committed_offset + 1``.

Everything here is plain code over :mod:`core.lake.ports` and :class:`core.ports.OffsetStore`;
``streams.lake`` passes the real store, catalog, thread pool and consumer offsets in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from core.lake.encode import build_table, parquet_bytes
from core.lake.flush import FilePlan, PartitionBuffer, plan_files
from core.lake.layout import PartitionValue, manifest_key, schema_key, table_name, table_prefix
from core.lake.manifest import Manifest, orphan_files
from core.lake.ports import Catalog, ObjectStore
from core.lake.schema import TableSchema
from core.ports import OffsetStore
from core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
TP = tuple[str, int]
TableKey = tuple[str, str]


def run_step(pool: Executor, call: Callable[[T], object], items: Iterable[T]) -> list[BaseException | None]:
    """Run ``call`` over ``items`` on the pool and wait for **every** call; the outcome of each
    (None or its exception). A step is a barrier: nothing of the next step may start while a call
    of this one is still running."""
    futures = [pool.submit(call, item) for item in items]
    wait(futures)
    return [future.exception() for future in futures]


def raise_first(outcomes: Sequence[BaseException | None]) -> None:
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


@dataclass(frozen=True)
class Recovery:
    manifest: Manifest
    orphans: list[str]

    @property
    def start_offset(self) -> int | None:
        """Where reading resumes; None: from the beginning (nothing of this partition is in the lake)."""
        return self.manifest.next_offset if self.manifest.committed_offset >= 0 else None


def recover_partition(store: ObjectStore, lane: str, table: str, topic: str, partition: int) -> Recovery:
    """Read the partition's manifest and delete its orphans (files above the committed offset)."""
    raw = store.get(manifest_key(lane, topic, partition))
    manifest = Manifest.from_bytes(raw) if raw else Manifest(topic, partition)
    orphans = orphan_files(manifest, store.list_keys(table_prefix(lane, table) + "/"))
    for orphan in orphans:
        log.info("lake: deleting orphan %s (above offset %s)", orphan, manifest.committed_offset)
        store.delete(orphan)
    return Recovery(manifest, orphans)


@dataclass(frozen=True)
class FlushResult:
    partitions: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0
    unsettled: str | None = None  # the step (catalog/offsets) left pending, None when all done


@dataclass
class _Work:
    buffer: PartitionBuffer
    lane: str
    table: str
    plans: list[FilePlan]
    advanced: Manifest

    @property
    def tp(self) -> TP:
        return (self.buffer.topic, self.buffer.partition)


@dataclass
class LakeCommitter:
    """The commit path (module docstring) and the state it owns: manifests of the assigned
    partitions, table schemas, and what the catalog and Kafka have not acknowledged yet."""

    settings: Settings
    store: ObjectStore
    catalog: Catalog | None
    pool: Executor
    overrides: dict[str, TableSchema] = field(default_factory=dict)
    manifests: dict[TP, Manifest] = field(default_factory=dict)
    schemas: dict[TableKey, TableSchema] = field(default_factory=dict)
    stored_schemas: dict[TableKey, bytes] = field(default_factory=dict)
    unregistered: dict[TableKey, set[PartitionValue]] = field(default_factory=dict)
    pending_offsets: dict[TP, int] = field(default_factory=dict)

    def resolve(self, topic: str) -> TableKey:
        """(lane, table) of a per-event topic."""
        for lane in self.settings.lanes:
            name = table_name(topic, self.settings.topic_per_event, lane)
            if name is not None:
                return lane, name
        raise ValueError(f"topic {topic!r} is not a per-event topic of lanes {self.settings.lanes}")

    # --- ownership -----------------------------------------------------------------------------
    def recover(self, partitions: Sequence[TP]) -> dict[TP, Recovery]:
        """Recover newly assigned partitions (their S3 round trips overlap on the pool) and adopt
        their manifests. The group's offsets are brought up to the manifests on the next settle (a
        crash between manifest and offset commit leaves them behind)."""

        def recover(tp: TP) -> Recovery:
            return recover_partition(self.store, *self.resolve(tp[0]), *tp)

        recoveries = list(self.pool.map(recover, partitions))
        for tp, recovery in zip(partitions, recoveries, strict=True):
            self.manifests[tp] = recovery.manifest
            if recovery.start_offset is not None:
                self.pending_offsets[tp] = recovery.start_offset
        return dict(zip(partitions, recoveries, strict=True))

    def release(self, partitions: Iterable[TP]) -> None:
        """Partitions now read elsewhere: their state goes (the new owner recovers from manifests)."""
        for tp in partitions:
            self.manifests.pop(tp, None)
            self.pending_offsets.pop(tp, None)

    def take_fenced(self) -> dict[TP, int | None]:
        """Manifests are not fenced (see docs/lake.md, "Zombie writers"): never any."""
        return {}

    # --- the commit path ---------------------------------------------------------------------------
    def flush(self, buffers: Iterable[PartitionBuffer], offsets: OffsetStore) -> FlushResult:
        """Steps 1 to 5 of the module docstring for ``buffers`` (of assigned partitions).

        Raises when a step up to the manifests fails; the buffers not vouched for by a written
        manifest are then untouched. Catalog and offset failures are returned as ``unsettled``.
        """
        work = self._plan(buffers)
        if not work:
            return FlushResult()
        sizes = self._write_files(work)
        self._write_schemas({(item.lane, item.table) for item in work})
        rows = self._write_manifests(work)
        return FlushResult(
            partitions=len(work),
            rows=rows,
            files=len(sizes),
            bytes=sum(sizes),
            unsettled=self.settle(offsets),
        )

    def _plan(self, buffers: Iterable[PartitionBuffer]) -> list[_Work]:
        chosen = [b for b in buffers if b.rows and (b.topic, b.partition) in self.manifests]
        tables = {self.resolve(buffer.topic) for buffer in chosen}
        raise_first(run_step(self.pool, self._load_schema, tables - set(self.schemas)))
        work = []
        for buffer in chosen:
            lane, table = self.resolve(buffer.topic)
            where = f"{buffer.topic}[{buffer.partition}]@{buffer.rows[0].offset}"
            self.schemas[(lane, table)].observe((row.properties for row in buffer.rows), where)
            plans = plan_files(lane, table, buffer.rows, self.settings.lake_partition_time)
            manifest = self.manifests[(buffer.topic, buffer.partition)]
            advanced = manifest.advanced(buffer.rows[-1].offset, len(buffer.rows), (p.key for p in plans))
            work.append(_Work(buffer, lane, table, plans, advanced))
        return work

    def _load_schema(self, key: TableKey) -> None:
        lane, table = key
        override = self.overrides.get(table)
        schema = TableSchema(dict(override.columns), override.declared) if override else TableSchema()
        stored = self.store.get(schema_key(lane, table))
        if stored:
            schema.merge(TableSchema.from_bytes(stored))
            self.stored_schemas[key] = stored
        self.schemas[key] = schema

    def _write_files(self, work: list[_Work]) -> list[int]:
        """Step 1; the size of each file written."""
        compression = self.settings.lake_compression
        files = [(item, plan) for item in work for plan in item.plans]
        sizes = [0] * len(files)

        def write(index: int) -> None:
            item, plan = files[index]
            data = parquet_bytes(build_table(plan.rows, self.schemas[(item.lane, item.table)]), compression)
            self.store.put(plan.key, data)
            sizes[index] = len(data)

        raise_first(run_step(self.pool, write, range(len(files))))
        return sizes

    def _write_schemas(self, tables: set[TableKey]) -> None:
        """Step 2: the schemas that changed since they were last stored."""

        def write(key: TableKey) -> None:
            encoded = self.schemas[key].to_bytes(key[1])
            if self.stored_schemas.get(key) != encoded:
                self.store.put(schema_key(*key), encoded)
                self.stored_schemas[key] = encoded

        raise_first(run_step(self.pool, write, sorted(tables)))

    def _write_manifests(self, work: list[_Work]) -> int:
        """Step 3. Each partition whose manifest is written is adopted at once — even when another
        partition's manifest failed — so a retry never rewrites rows a manifest already vouches for."""

        def write(item: _Work) -> None:
            self.store.put(manifest_key(item.lane, *item.tp), item.advanced.to_bytes())

        outcomes = run_step(self.pool, write, work)
        rows = 0
        for item, outcome in zip(work, outcomes, strict=True):
            if outcome is None:
                rows += len(item.buffer.take())
                self.manifests[item.tp] = item.advanced
                self.pending_offsets[item.tp] = item.advanced.next_offset
                values = self.unregistered.setdefault((item.lane, item.table), set())
                values.update(plan.value for plan in item.plans)
        raise_first(outcomes)
        return rows

    # --- steps 4 and 5 -----------------------------------------------------------------------------
    @property
    def unsettled(self) -> bool:
        return bool(self.pending_offsets or (self.catalog is not None and self.unregistered))

    def settle(self, offsets: OffsetStore) -> str | None:
        """Register what the catalog lacks, then commit pending offsets. Returns the step that
        failed (``catalog``/``offsets``, kept pending for the next call) or None."""
        if self.catalog is not None and self.unregistered and not self._register(self.catalog):
            return "catalog"
        if not self.pending_offsets:
            return None
        committing = dict(self.pending_offsets)
        try:
            offsets.commit(committing)
        except Exception as exc:  # the manifests hold these offsets; the next settle catches up
            log.info("lake: offset commit deferred: %s", exc)
            return "offsets"
        for tp, offset in committing.items():
            if self.pending_offsets.get(tp) == offset:
                del self.pending_offsets[tp]
        return None

    def _register(self, catalog: Catalog) -> bool:
        """Step 4, one task per table so the catalog round trips overlap; True when all succeeded."""
        pending = {key: sorted(values) for key, values in self.unregistered.items()}

        def register(key: TableKey) -> None:
            lane, table = key
            try:
                catalog.ensure_table(lane, table, self.schemas[key])
                catalog.ensure_partitions(lane, table, pending[key])
            except Exception:
                catalog.forget(lane, table)  # its cache may claim what the catalog does not have
                raise

        outcomes = run_step(self.pool, register, list(pending))
        for key, outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                self.unregistered[key] -= set(pending[key])
                if not self.unregistered[key]:
                    del self.unregistered[key]
            else:
                log.warning("lake: catalog registration of %s failed, retried: %s", key[1], outcome)
        return all(outcome is None for outcome in outcomes)
