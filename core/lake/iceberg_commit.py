"""The Iceberg lake's commit path (``lake_format = "iceberg"``): one fenced snapshot per table per flush.

Delivery guarantee: **exactly once in the lake**, like the Parquet path, but with the Kafka offsets in
the table itself. Each table's snapshot summary holds the full per-partition offset map
(``core.lake.offsets``); a flush commits, per table, its buffered rows and that map moved forward in
ONE snapshot — rows and offsets become visible together or not at all. Then, as a convenience, the
Kafka offsets are committed.

* Recovery (:meth:`IcebergCommitter.recover`): read the newest offset map of each table and resume
  each partition there. Files of a flush that died before its commit are referenced by no snapshot:
  readers never see them and nothing needs deleting on the hot path (maintenance removes them).
* Fencing: a commit goes through only if the head's offsets of the partitions it writes are still
  the ones this writer recovered or last committed (the check runs on the head the attempt commits
  on — the first attempt on the head this writer last saw, every retry on one just read — and the
  catalog compare-and-swaps the head, refusing an attempt whose head is no longer current).
  Otherwise another writer owns them:
  their buffers are dropped, their position re-read from the head, and :meth:`take_fenced` tells the
  consumer where to resume — if it still owns them at all.

Plain code over :class:`core.lake.ports.SnapshotTables` (``connectors.iceberg_lake.IcebergLake``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from core.envelope import parse_json_event
from core.lake.columnar import FlushBatch
from core.lake.fence import Recovery
from core.lake.flush import PartitionBuffer
from core.lake.layout import topic_table
from core.lake.manifest import NO_OFFSET, Manifest
from core.lake.offsets import tp_key
from core.lake.ports import SnapshotTables, TableAppend
from core.lake.records import EventDecoder
from core.lake.steps import FlushResult, commit_offsets, raise_first
from core.ports import OffsetStore
from core.settings import Settings

log = logging.getLogger(__name__)
TP = tuple[str, int]
TableKey = tuple[str, str]


def position(topic: str, partition: int, next_offset: int | None) -> Manifest:
    """What is in the lake for a partition, in the commit path's terms (its last offset)."""
    return Manifest(topic, partition, NO_OFFSET if next_offset is None else next_offset - 1)


@dataclass
class IcebergCommitter:
    """The commit path of the Iceberg lake and the state it owns (the :class:`LakeCommitPath`)."""

    settings: Settings
    tables: SnapshotTables
    pool: Executor
    manifests: dict[TP, Manifest] = field(default_factory=dict)
    pending_offsets: dict[TP, int] = field(default_factory=dict)
    fenced: dict[TP, int | None] = field(default_factory=dict)
    decode_event: EventDecoder = parse_json_event  # the wire codec's decode, passed in by the edge

    def table_of(self, topic: str) -> TableKey | None:
        """(lane, table) of a per-event topic or a lane's common topic; None for any other topic."""
        return topic_table(self.settings, topic)

    def resolve(self, topic: str) -> TableKey:
        key = self.table_of(topic)
        if key is not None:
            return key
        raise ValueError(f"topic {topic!r} is no per-event or common topic of lanes {self.settings.lanes}")

    # --- ownership -----------------------------------------------------------------------------
    def recover(self, partitions: Sequence[TP]) -> dict[TP, Recovery]:
        """Where each partition resumes: the head snapshot's offsets. A topic that names no table
        (outside the router's grammar) gets no recovery: it is ignored."""
        partitions = [tp for tp in partitions if self.table_of(tp[0]) is not None]
        heads = self._heads({self.resolve(topic) for topic, _ in partitions})
        recoveries = {}
        for topic, partition in partitions:
            start = heads[self.resolve(topic)].get(tp_key(topic, partition))
            manifest = position(topic, partition, start)
            self.manifests[(topic, partition)] = manifest
            if start is not None:
                self.pending_offsets[(topic, partition)] = start
            recoveries[(topic, partition)] = Recovery(manifest, [])
        return recoveries

    def _heads(self, tables: Iterable[TableKey]) -> dict[TableKey, dict[str, int]]:
        keys = sorted(tables)
        return dict(zip(keys, self.pool.map(lambda key: self.tables.head_offsets(*key), keys), strict=True))

    def release(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self.manifests.pop(tp, None)
            self.pending_offsets.pop(tp, None)
            self.fenced.pop(tp, None)

    def take_fenced(self) -> dict[TP, int | None]:
        taken, self.fenced = self.fenced, {}
        return taken

    # --- the commit path -------------------------------------------------------------------------
    def flush(self, buffers: Iterable[PartitionBuffer], offsets: OffsetStore) -> FlushResult:
        """One fenced append per table; a table that failed or was fenced keeps (or drops) its own
        buffers without holding back the others. A failure is raised when no table committed;
        after partial progress it is logged and reported as ``unsettled="flush"`` instead, so the
        committed rows are counted and the failed tables are retried on the next flush."""
        by_table: dict[TableKey, list[PartitionBuffer]] = {}
        for buffer in buffers:
            if buffer.rows and (buffer.topic, buffer.partition) in self.manifests:
                by_table.setdefault(self.resolve(buffer.topic), []).append(buffer)
        if not by_table:
            return FlushResult()
        # Biggest first: its encoding (in chunks, ``connectors.iceberg_lake``) then runs beside the
        # small tables instead of after them, so the flush — during which nothing is read — is shorter.
        biggest_first = sorted(by_table.items(), key=lambda item: -sum(len(b.rows) for b in item[1]))
        futures = {key: self.pool.submit(self._append, key, group) for key, group in biggest_first}
        rows = files = size = partitions = 0
        failures: list[BaseException | None] = []
        fenced_tables: set[TableKey] = set()
        for key, future in futures.items():
            outcome = _outcome(future)
            if isinstance(outcome, BaseException):
                failures.append(outcome)
            elif not outcome.committed:
                self._drop_fenced(by_table[key], outcome.fenced)
                fenced_tables.add(key)
            else:
                files, size = files + outcome.files, size + outcome.bytes
                for buffer in by_table[key]:
                    rows, partitions = rows + self._adopt(buffer), partitions + 1
        self._reposition_fenced(fenced_tables)
        if failures and not partitions:
            raise_first(failures)
        for failure in failures:
            log.warning("lake: a table's commit failed, its buffers kept for the next flush: %r", failure)
        unsettled = self.settle(offsets)
        return FlushResult(partitions, rows, files, size, "flush" if failures else unsettled)

    def _append(self, key: TableKey, group: list[PartitionBuffer]) -> TableAppend:
        expected: dict[str, int | None] = {}
        written: dict[str, int] = {}
        for buffer in group:
            manifest = self.manifests[(buffer.topic, buffer.partition)]
            committed = manifest.committed_offset
            expected[tp_key(buffer.topic, buffer.partition)] = (
                None if committed == NO_OFFSET else committed + 1
            )
            written[tp_key(buffer.topic, buffer.partition)] = buffer.rows[-1].offset + 1
        # Buffers hold raw records: parsed (or decoded) by the table's append, once per flush.
        batch = FlushBatch([record for buffer in group for record in buffer.rows], self.decode_event)
        return self.tables.append(*key, batch, expected, written)

    def _adopt(self, buffer: PartitionBuffer) -> int:
        tp = (buffer.topic, buffer.partition)
        taken = buffer.take()
        self.manifests[tp] = position(buffer.topic, buffer.partition, taken[-1].offset + 1)
        self.pending_offsets[tp] = taken[-1].offset + 1
        return len(taken)

    def _drop_fenced(self, group: list[PartitionBuffer], keys: Sequence[str]) -> None:
        for buffer in group:
            if tp_key(buffer.topic, buffer.partition) in keys:
                dropped = buffer.take()
                log.warning(
                    "lake: %s[%s] is written by another worker; dropped %d buffered rows (it replays them)",
                    buffer.topic,
                    buffer.partition,
                    len(dropped),
                )
                self.fenced[(buffer.topic, buffer.partition)] = None

    def _reposition_fenced(self, tables: set[TableKey]) -> None:
        """Fenced partitions resume where the head says (when this worker still owns them)."""
        if not tables:
            return
        heads = self._heads(tables)
        for tp in list(self.fenced):
            if tp in self.manifests and self.resolve(tp[0]) in heads:
                start = heads[self.resolve(tp[0])].get(tp_key(*tp))
                self.manifests[tp] = position(*tp, start)
                self.pending_offsets.pop(tp, None)
                self.fenced[tp] = start

    # --- Kafka offsets ---------------------------------------------------------------------------
    @property
    def unsettled(self) -> bool:
        return bool(self.pending_offsets)

    def settle(self, offsets: OffsetStore) -> str | None:
        return commit_offsets(self.pending_offsets, offsets)


def _outcome(future: Future[TableAppend]) -> TableAppend | BaseException:
    error = future.exception()
    return error if error is not None else future.result()
