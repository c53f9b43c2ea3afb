"""The lake's one commit path and its recovery: how buffered rows become exactly-once lake rows.

Delivery guarantee: **exactly once in the lake** — every Kafka record of a per-event topic ends up in
exactly one lake row once its flush completed, across crashes, retries and rebalances. A flush
(:meth:`LakeCommitter.flush`) is a sequence of steps; each step is a barrier (every call of it has
ended before the next step starts), and a failure ends the flush at that step:

0. **intents** — a partition about to write under a Hive partition its manifest does not declare
   yet writes the manifest with it added first (conditionally, like every manifest write);
1. **table schemas** — ``_schema.json`` of each table whose schema changed, compare-and-swapped
   (:mod:`core.lake.schema_store`): a write refused because another writer stored columns
   meanwhile re-reads them, lets the stored decisions win, routes this flush's rows again and
   retries. Settled *before* any data file is written, so every file's columns are the table's;
2. **data files** — one Parquet file per (topic-partition, Hive partition value), at a key that is a
   pure function of the data (first offset of the file's rows, partition value) and the writer's
   epoch, so a retry rewrites the same keys instead of adding new ones;
3. **manifests** — per topic-partition ``committed_offset = last flushed offset``, written only
   after every file it vouches for. A partition's rows count as in the lake from here on: its
   buffer is emptied and its manifest adopted as soon as its own manifest is written;
4. **catalog** — tables/partitions registered (Glue); a failure keeps them pending;
5. **Kafka offsets** — ``committed_offset + 1`` (lag monitoring only: the manifest is the truth).

A failure before step 3 leaves the buffers as they were: the caller retries the flush (same keys,
overwritten) or, after a crash, the next owner replays from the manifest. Steps 4 and 5 stay
pending when they fail and are retried by :meth:`LakeCommitter.settle`.

**Fencing** (:mod:`core.lake.fence`). Every manifest write is a compare-and-swap; on assignment a
writer claims the partition (a new epoch), so a writer that lost it (a zombie: cut off, paused, or
blocked in a flush too long) has its next intent or manifest refused: it drops the partition's
rows, commits no offset, and deletes that flush's files (its epoch is in their keys) not vouched for.

Recovery on assignment (:meth:`LakeCommitter.recover`): claim, delete the partition's files whose
first offset is above ``committed_offset`` and whose epoch is older than the claim, resume at
``committed_offset + 1``. docs/lake.md has the argument. Plain code over :mod:`core.lake.ports`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from core.envelope import parse_json_event
from core.lake.columnar import FlushBatch
from core.lake.encode import parquet_bytes
from core.lake.fence import (
    Claim,
    Fenced,
    ManifestGone,
    Recovery,
    claim_partition,
    put_manifest,
    sweep_prefixes,
)
from core.lake.fence import recover_partition as recover_partition  # where callers found it before
from core.lake.flush import PartitionBuffer, plan_groups
from core.lake.layout import PartitionValue, epoch_key, manifest_key, topic_table
from core.lake.manifest import Manifest, manifest_vouches, orphan_files
from core.lake.ports import Catalog, ObjectStore
from core.lake.records import EventDecoder, LakeRow
from core.lake.schema import ShapeLimits, TableSchema
from core.lake.schema_store import StoredSchemas
from core.lake.steps import FlushResult, FlushWork, TableKey, commit_offsets, raise_first, run_step
from core.ports import OffsetStore
from core.settings import Settings

log = logging.getLogger(__name__)
TP = tuple[str, int]


def _quarantined(row: LakeRow, error: str) -> None:
    log.warning("lake: offset %s of partition %s kept as _raw: %s", row.offset, row.partition, error)


@dataclass
class LakeCommitter:
    """The commit path (module docstring) and the state it owns: manifests of the assigned
    partitions, table schemas, and what the catalog and Kafka have not acknowledged yet."""

    settings: Settings
    store: ObjectStore
    catalog: Catalog | None
    pool: Executor
    overrides: dict[str, TableSchema] = field(default_factory=dict)
    decode_event: EventDecoder = parse_json_event  # the wire codec's decode, passed in by the edge
    manifests: dict[TP, Manifest] = field(default_factory=dict)
    unregistered: dict[TableKey, set[PartitionValue]] = field(default_factory=dict)
    pending_offsets: dict[TP, int] = field(default_factory=dict)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    tags: dict[TP, str] = field(default_factory=dict)  # version of each owned partition's manifest
    fenced_total: int = 0
    newly_fenced: dict[TP, int | None] = field(default_factory=dict)  # drained by take_fenced
    # Manifest writes that failed without an answer: they may have landed (see _resolve_unsure).
    unsure: dict[TP, FlushWork] = field(default_factory=dict)
    tables: StoredSchemas = field(init=False)

    def __post_init__(self) -> None:
        limits = ShapeLimits(
            self.settings.lake_max_properties_per_event, self.settings.lake_max_columns_per_table
        )
        self.tables = StoredSchemas(self.store, limits, self.overrides)

    @property
    def schemas(self) -> dict[TableKey, TableSchema]:
        """Each table's schema as this writer holds it."""
        return self.tables.schemas

    def table_of(self, topic: str) -> TableKey | None:
        """(lane, table) of a per-event topic or a lane's common topic; None for any other topic."""
        return topic_table(self.settings, topic)

    def resolve(self, topic: str) -> TableKey:
        """(lane, table) of a per-event or common topic."""
        key = self.table_of(topic)
        if key is None:
            raise ValueError(f"topic {topic!r} is no lake topic of lanes {self.settings.lanes}")
        return key

    # --- ownership -----------------------------------------------------------------------------
    def recover(self, partitions: Sequence[TP]) -> dict[TP, Recovery]:
        """Claim newly assigned partitions, delete what dead flushes left, and adopt the manifests.
        The S3 round trips overlap on the pool, and a table is listed at most once (only for
        partitions never claimed before; the others list just their declared Hive partitions).
        The group's offsets are brought up to the manifests on the next settle (a crash between
        manifest and offset commit leaves them behind). A topic that names no table (the regex
        matched a name the router would never create) gets no recovery: it is ignored."""
        for topic, partition in partitions:
            if self.table_of(topic) is None:
                log.error(
                    "lake: %s[%d] is not a per-event topic of the router's grammar; ignored", topic, partition
                )
        partitions = [tp for tp in partitions if self.table_of(tp[0]) is not None]
        tables = {tp: self.resolve(tp[0]) for tp in partitions}

        def take(tp: TP) -> Claim:
            return claim_partition(self.store, tables[tp][0], *tp, self.owner)

        claims = dict(zip(partitions, self.pool.map(take, partitions), strict=True))
        where = {tp: sweep_prefixes(*tables[tp], claim) for tp, claim in claims.items()}
        prefixes = sorted({prefix for found in where.values() for prefix in found})
        listed = dict(zip(prefixes, self.pool.map(self.store.list_keys, prefixes), strict=True))
        recoveries: dict[TP, Recovery] = {}
        for tp, claim in claims.items():
            keys = {key for prefix in where[tp] for key in listed[prefix]}
            orphans = orphan_files(claim.manifest, keys, below_epoch=claim.manifest.epoch)
            recoveries[tp] = Recovery(claim.manifest, orphans, claim.tag)
        doomed = sorted({orphan for recovery in recoveries.values() for orphan in recovery.orphans})
        for orphan in doomed:
            log.info("lake: deleting orphan %s (a dead flush's file)", orphan)
        raise_first(run_step(self.pool, self.store.delete, doomed))
        for tp, recovery in recoveries.items():
            self.unsure.pop(tp, None)
            self.manifests[tp] = recovery.manifest
            self.tags[tp] = recovery.tag
            if recovery.start_offset is not None:
                self.pending_offsets[tp] = recovery.start_offset
        return recoveries

    def release(self, partitions: Iterable[TP]) -> None:
        """Partitions now read elsewhere: their state goes (the new owner recovers from manifests)."""
        for tp in partitions:
            self.manifests.pop(tp, None)
            self.tags.pop(tp, None)
            self.pending_offsets.pop(tp, None)
            self.unsure.pop(tp, None)

    def take_fenced(self) -> dict[TP, int | None]:
        """Partitions fenced out since the last call (also when the flush that fenced them raised),
        each with where their new owner's manifest resumes (None: the beginning). They are released:
        writing them again takes a new claim (:meth:`recover`)."""
        fenced, self.newly_fenced = self.newly_fenced, {}
        return fenced

    # --- the commit path ---------------------------------------------------------------------------
    def flush(self, buffers: Iterable[PartitionBuffer], offsets: OffsetStore) -> FlushResult:
        """Steps 0 to 5 of the module docstring for ``buffers`` (of assigned partitions).

        Raises when a step up to the manifests fails; the buffers not vouched for by a written
        manifest are then untouched. Catalog and offset failures are returned as ``unsettled``.
        """
        fenced = self._resolve_unsure()
        work = self._plan(buffers)
        if not work:
            return FlushResult(fenced=tuple(sorted(fenced)))
        fenced |= self._write_intents(work)
        work = [item for item in work if item.tp not in fenced]
        self._settle_schemas(work)
        sizes = self._write_files(work)
        rows = self._write_manifests(work, fenced)
        return FlushResult(
            partitions=sum(1 for item in work if item.tp not in fenced),
            rows=rows,
            files=len(sizes),
            bytes=sum(sizes),
            unsettled=self.settle(offsets),
            fenced=tuple(sorted(fenced)),
        )

    def _plan(self, buffers: Iterable[PartitionBuffer]) -> list[FlushWork]:
        chosen = [b for b in buffers if b.rows and (b.topic, b.partition) in self.manifests]
        # Buffers hold raw bytes: each is parsed (or decoded) here, once per flush.
        batches = [(b, self.resolve(b.topic), FlushBatch(b.rows, self.decode_event)) for b in chosen]
        loading = {key for _, key, _ in batches} - set(self.schemas)
        raise_first(run_step(self.pool, self.tables.load, loading))
        # A table about to get new columns reads its stored schema again first, so the columns
        # another writer created meanwhile keep their names and types.
        growing = {
            key for _, key, batch in batches if key not in loading and batch.would_grow(self.schemas[key])
        }
        raise_first(run_step(self.pool, self.tables.refresh, growing))
        work = []
        for buffer, (lane, table), batch in batches:
            schema = self.schemas[(lane, table)]
            batch.observe(schema, f"{buffer.topic}[{buffer.partition}]@{buffer.rows[0].offset}")
            groups = batch.partition_groups(schema, self.settings.lake_partition_time)
            manifest = self.manifests[(buffer.topic, buffer.partition)]
            plans = [
                dataclasses.replace(plan, key=epoch_key(plan.key, manifest.epoch))
                for plan in plan_groups(lane, table, buffer.rows, groups)
            ]
            advanced = manifest.advanced(
                buffer.rows[-1].offset,
                len(buffer.rows),
                (p.key for p in plans),
                (p.value.path for p in plans),
            )
            work.append(FlushWork(buffer, lane, table, plans, advanced, batch))
        return work

    def _write_files(self, work: list[FlushWork]) -> list[int]:
        """Step 2; the size of each file written."""
        compression = self.settings.lake_compression
        sizes: list[list[int]] = [[] for _ in work]

        def write(index: int) -> None:
            item = work[index]
            tables = item.batch.tables(self.schemas[(item.lane, item.table)], item.groups, _quarantined)
            for plan, table in zip(item.plans, tables, strict=True):
                data = parquet_bytes(table, compression)
                self.store.put(plan.key, data)
                sizes[index].append(len(data))

        raise_first(run_step(self.pool, write, range(len(work))))
        return [size for item_sizes in sizes for size in item_sizes]

    def _settle_schemas(self, work: list[FlushWork]) -> None:
        """Step 1: store the schema of each table of ``work`` whose columns changed."""
        batches: dict[TableKey, list[FlushBatch]] = {}
        for item in work:
            batches.setdefault((item.lane, item.table), []).append(item.batch)
        raise_first(run_step(self.pool, lambda key: self.tables.settle(key, batches[key]), sorted(batches)))

    def _put_manifest(self, item: FlushWork, manifest: Manifest) -> None:
        self.tags[item.tp] = put_manifest(
            self.store, manifest_key(item.lane, *item.tp), manifest, self.tags.get(item.tp)
        )

    def _write_intents(self, work: list[FlushWork]) -> set[TP]:
        """Step 0: declare the Hive partitions a flush is about to write under, where the manifest
        does not declare them yet; the partitions fenced out."""
        intents = {
            item.tp: self.manifests[item.tp].with_values(item.values)
            for item in work
            if not self.manifests[item.tp].covers(item.values)
        }
        needed = [item for item in work if item.tp in intents]
        outcomes = run_step(self.pool, lambda item: self._put_manifest(item, intents[item.tp]), needed)
        fenced: set[TP] = set()
        for item, outcome in zip(needed, outcomes, strict=True):
            if outcome is None:
                self.manifests[item.tp] = intents[item.tp]
            elif isinstance(outcome, Fenced):
                self._fence(item, outcome, written=[])
                fenced.add(item.tp)
        raise_first([outcome for outcome in outcomes if not isinstance(outcome, Fenced)])
        return fenced

    def _write_manifests(self, work: list[FlushWork], fenced: set[TP]) -> int:
        """Step 3. Each partition whose manifest is written is adopted at once — even when another
        partition's manifest failed — so a retry never rewrites rows a manifest already vouches for.
        A partition whose manifest is refused is fenced (added to ``fenced``)."""
        outcomes = run_step(self.pool, lambda item: self._put_manifest(item, item.advanced), work)
        rows = 0
        for item, outcome in zip(work, outcomes, strict=True):
            if outcome is None:
                rows += self._adopt(item, item.advanced)
            elif isinstance(outcome, Fenced):
                self._fence(item, outcome, written=[plan.key for plan in item.plans])
                fenced.add(item.tp)
            else:
                self.unsure[item.tp] = item
        raise_first([outcome for outcome in outcomes if not isinstance(outcome, Fenced)])
        return rows

    def _adopt(self, item: FlushWork, manifest: Manifest) -> int:
        """``item``'s manifest is written: its rows are in the lake. The number of rows."""
        self.unsure.pop(item.tp, None)
        rows = len(item.buffer.take_through(manifest.committed_offset))
        self.manifests[item.tp] = manifest
        self.pending_offsets[item.tp] = manifest.next_offset
        self.unregistered.setdefault((item.lane, item.table), set()).update(p.value for p in item.plans)
        return rows

    def _resolve_unsure(self) -> set[TP]:
        """Before rows are written again, find out whether a manifest write that failed without an
        answer landed: adopted if it did (its rows leave the buffer, so its files — vouched for now —
        are never rewritten with other rows); fenced at once, writing nothing, if another writer
        claimed the partition meanwhile. Returns the partitions fenced; raises (all stay unsure)
        when the store does."""
        pending = [item for tp, item in self.unsure.items() if tp in self.manifests]
        keys = [manifest_key(item.lane, *item.tp) for item in pending]
        found = list(self.pool.map(self.store.get_tagged, keys))
        gone = [key for key, tagged in zip(keys, found, strict=True) if tagged is None]
        if gone:
            raise ManifestGone(gone[0])
        self.unsure = {}
        fenced: set[TP] = set()
        for item, key, (data, tag) in zip(pending, keys, (t for t in found if t), strict=True):
            stored = Manifest.from_bytes(data)
            if stored == item.advanced:
                self.tags[item.tp] = tag
                self._adopt(item, item.advanced)
                log.info("lake: the unanswered manifest write of %s[%d] had landed", *item.tp)
            elif (stored.epoch, stored.owner) != (item.advanced.epoch, item.advanced.owner):
                self._fence(item, Fenced(key, stored), written=[plan.key for plan in item.plans])
                fenced.add(item.tp)
        return fenced

    def _fence(self, item: FlushWork, fence: Fenced, written: list[str]) -> None:
        """This writer lost ``item``'s partition: no offset commit, its rows dropped (the owner
        replays them from the manifest), and the files this flush wrote deleted — they carry this
        writer's epoch, so they are its own — except those the stored manifest vouches for: a write
        of ours that landed, unanswered, before the claim (``Manifest.vouched_through``). A file left
        behind (the delete failed) is deleted by a later claim that finds it under a declared Hive
        partition (``Manifest.ended``)."""
        manifest = self.manifests.get(item.tp)
        self.release([item.tp])
        dropped = len(item.buffer.take())
        stored = fence.stored
        vouched = stored.vouched_through(item.advanced.epoch) if stored else -1
        if vouched >= item.advanced.committed_offset:
            log.warning("lake: %s[%d]: this flush's manifest had landed before the claim", *item.tp)
        deleted = 0
        for key in (key for key in written if not manifest_vouches(key, vouched)):
            try:
                self.store.delete(key)
                deleted += 1
            except Exception as exc:  # best effort: the file is unvouched either way
                log.warning("lake: could not delete %s of a fenced flush: %s", key, exc)
        self.fenced_total += 1
        self.newly_fenced[item.tp] = stored.next_offset if stored and stored.committed_offset >= 0 else None
        log.warning(
            "lake: FENCED out of %s[%d] (this writer: epoch %s, %s): %s; %d buffered rows dropped "
            "(the owner replays them), %d of %d files of this flush deleted, no offset committed",
            *item.tp,
            manifest.epoch if manifest else "?",
            self.owner,
            fence,
            dropped,
            deleted,
            len(written),
        )

    # --- steps 4 and 5 -----------------------------------------------------------------------------
    @property
    def unsettled(self) -> bool:
        return bool(self.pending_offsets or (self.catalog is not None and self.unregistered))

    def settle(self, offsets: OffsetStore) -> str | None:
        """Register what the catalog lacks, then commit pending offsets. Returns the step that
        failed (``catalog``/``offsets``, kept pending for the next call) or None."""
        if self.catalog is not None and self.unregistered and not self._register(self.catalog):
            return "catalog"
        return commit_offsets(self.pending_offsets, offsets)

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
