"""Per topic-partition buffers and the flush policy: rows, bytes or age — whichever comes first.

Memory is bounded by ``max_buffered_bytes`` across all buffers: above it the consumer must flush
(the largest buffers first) before it reads more — backpressure instead of growth. Buffers hold the
raw records (:class:`core.lake.records.RawRecord`), so ``size_bytes`` is what they really hold;
records are decoded at flush time, one batch at a time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from core.lake.layout import PartitionValue, data_file_key
from core.lake.records import LakeRow, RawRecord, partition_value, record_bytes

METADATA_CACHE_MAX_BYTES = 64 << 20
"""The most of the memory cap an Iceberg lake gives to the Avro metadata it keeps of its own commits."""


@dataclass(frozen=True)
class MemoryBudget:
    """``lake_max_buffered_bytes`` split between what buffering and the metadata cache may hold."""

    buffers: int
    metadata_cache: int


def split_memory_cap(max_buffered_bytes: int, lake_format: Literal["iceberg", "parquet"]) -> MemoryBudget:
    """The cap covers everything the lake keeps between flushes: the record buffers and, for Iceberg,
    the manifests and manifest lists it wrote (read back by its next commits,
    ``connectors.iceberg_io.WrittenFiles``): an eighth of the cap, at most 64 MiB. The parquet format
    keeps no such cache."""
    if lake_format == "parquet":
        return MemoryBudget(max_buffered_bytes, 0)
    cache = min(METADATA_CACHE_MAX_BYTES, max_buffered_bytes // 8)
    return MemoryBudget(max_buffered_bytes - cache, cache)


@contextmanager
def collector_skipping_buffers() -> Iterator[None]:
    """A flush with the objects that exist when it starts, the buffered records among them, out of
    the cyclic garbage collector's sight (``gc.freeze``), returned to it after.

    A flush allocates a lot (Arrow's inputs, pyiceberg's metadata objects), which triggers
    collections, and each collection of the oldest generation walks every buffered record: a million
    of them are a million tracked tuples (a ``NamedTuple`` is never untracked as a plain tuple of
    atoms is). That cost about 1 s of CPU in a 10.5 s flush of 1 000 000 records over 250 tables.
    The records hold no reference cycles, so the collector has nothing to find among them; objects
    the flush itself creates are collected as usual."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True)
class FlushPolicy:
    max_rows: int
    max_bytes: int
    max_age_s: float
    max_buffered_bytes: int

    def reason(self, buffer: PartitionBuffer, now: float) -> str | None:
        """Why ``buffer`` must be flushed now (``rows``/``bytes``/``age``), or None."""
        if not buffer.rows:
            return None
        if len(buffer.rows) >= self.max_rows:
            return "rows"
        if buffer.size_bytes >= self.max_bytes:
            return "bytes"
        if now - buffer.started_at >= self.max_age_s:
            return "age"
        return None

    def over_cap(self, buffers: list[PartitionBuffer]) -> list[PartitionBuffer]:
        """Buffers to flush, largest first, to bring the total back under the cap."""
        total = sum(buffer.size_bytes for buffer in buffers)
        chosen: list[PartitionBuffer] = []
        for buffer in sorted(buffers, key=lambda item: item.size_bytes, reverse=True):
            if total <= self.max_buffered_bytes:
                break
            if buffer.rows:
                chosen.append(buffer)
                total -= buffer.size_bytes
        return chosen


@dataclass
class PartitionBuffer:
    """Records of one topic-partition not yet in the lake, in offset order."""

    topic: str
    partition: int
    rows: list[RawRecord] = field(default_factory=list)
    size_bytes: int = 0
    started_at: float = 0.0

    def add(self, row: RawRecord, now: float) -> None:
        if not self.rows:
            self.started_at = now
        elif row.offset <= self.rows[-1].offset:
            raise ValueError(
                f"{self.topic}[{self.partition}]: offset {row.offset} after {self.rows[-1].offset}"
            )
        self.rows.append(row)
        self.size_bytes += record_bytes(row)

    def take(self) -> list[RawRecord]:
        rows, self.rows, self.size_bytes = self.rows, [], 0
        return rows

    def take_through(self, offset: int) -> list[RawRecord]:
        """The rows up to ``offset`` (now in the lake), leaving the later ones buffered."""
        cut = next((i for i, row in enumerate(self.rows) if row.offset > offset), len(self.rows))
        taken, self.rows = self.rows[:cut], self.rows[cut:]
        self.size_bytes -= sum(record_bytes(row) for row in taken)
        return taken


@dataclass(frozen=True)
class FilePlan:
    """One data file of a flush: its deterministic key and the positions of its rows in the flush's
    rows of its partition."""

    key: str
    value: PartitionValue
    positions: list[int]


def partition_positions(
    rows: Sequence[LakeRow], time_source: Literal["server", "client"]
) -> dict[PartitionValue, list[int]]:
    """The positions of ``rows`` in each Hive partition value, in row order."""
    groups: dict[PartitionValue, list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(partition_value(row, time_source), []).append(position)
    return groups


def plan_groups(
    lane: str,
    table: str,
    records: Sequence[RawRecord] | Sequence[LakeRow],
    groups: Mapping[PartitionValue, list[int]],
) -> list[FilePlan]:
    """One file per Hive partition value of a partition's flushed ``records``.

    Each file is keyed by the first offset of its own rows, so the same offsets always map to the
    same keys — a replay after a crash rewrites rather than duplicates.
    """
    return [
        FilePlan(
            data_file_key(lane, table, records[0].partition, records[positions[0]].offset, value),
            value,
            positions,
        )
        for value, positions in sorted(groups.items())
    ]


def plan_files(
    lane: str, table: str, rows: list[LakeRow], time_source: Literal["server", "client"]
) -> list[FilePlan]:
    """:func:`plan_groups` of decoded rows."""
    return plan_groups(lane, table, rows, partition_positions(rows, time_source)) if rows else []
