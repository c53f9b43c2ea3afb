"""The per-partition offset manifest: "offsets up to N of this topic-partition are in the lake", and
who may write the partition now.

Protocol (see docs/lake.md): a flush writes its data files first, then the manifest that vouches for
them. Every manifest write is conditional on the version the writer last saw (compare-and-swap), so
a writer that lost the partition cannot vouch for anything any more:

* ``epoch`` — the writer's claim. A writer bumps it on assignment (conditionally), so each epoch
  number belongs to exactly one writer, and the data files it writes carry it in their key;
* ``ended`` — for the last few epochs before this one, the committed offset when each ended: any
  file of such an epoch above it is dead, also one a zombie wrote after it was claimed out;
* ``values`` — the Hive partition paths (``dt=…/hour=…``) under which data files of this partition
  above ``committed_offset`` may exist: what a flush may have left behind if it died. A flush that
  writes under a path not listed first writes the manifest with the path added (an *intent*);
  ``ANYWHERE`` means the whole table (a partition last written before fencing existed).

A data file of this partition whose first offset is above ``committed_offset`` and whose epoch is
below the current writer's was written by a flush that can never be vouched for (:func:`orphan_files`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.lake.layout import parse_data_file

NO_OFFSET = -1
ANYWHERE = "*"
VERSION = 2
ENDED_KEPT = 8


@dataclass(frozen=True)
class Manifest:
    topic: str
    partition: int
    committed_offset: int = NO_OFFSET
    flushes: int = 0
    rows: int = 0
    last_files: tuple[str, ...] = field(default_factory=tuple)
    epoch: int = 0
    owner: str = ""
    values: tuple[str, ...] = field(default_factory=tuple)
    ended: tuple[tuple[int, int], ...] = field(default_factory=tuple)  # (epoch, committed offset then)

    @property
    def next_offset(self) -> int:
        """The first offset not yet in the lake: where consumption resumes."""
        return self.committed_offset + 1

    def claimed(self, owner: str) -> Manifest:
        """The partition taken over by ``owner`` in the next epoch. ``values`` are carried over so
        that, should this claim die before it cleaned up, the next one still knows where to look;
        a partition never claimed before may have files anywhere in its table."""
        values = self.values if self.epoch else (ANYWHERE,)
        ended = (*self.ended, (self.epoch, self.committed_offset))[-ENDED_KEPT:]
        return dataclasses.replace(self, epoch=self.epoch + 1, owner=owner, values=values, ended=ended)

    def covers(self, values: Iterable[str]) -> bool:
        """Whether files under ``values`` are already declared (no intent needed before writing)."""
        return ANYWHERE in self.values or set(values) <= set(self.values)

    def with_values(self, values: Iterable[str]) -> Manifest:
        """The intent: ``values`` declared in addition to what is already declared."""
        return dataclasses.replace(self, values=tuple(sorted(set(self.values) | set(values))))

    def advanced(
        self, last_offset: int, rows: int, files: Iterable[str], values: Iterable[str] = ()
    ) -> Manifest:
        """Offsets up to ``last_offset`` vouched for; ``values`` (those of this flush's files) become
        the declared paths, predicting where the next flush writes."""
        if last_offset <= self.committed_offset:
            raise ValueError(
                f"{self.topic}[{self.partition}]: manifest cannot move back from "
                f"{self.committed_offset} to {last_offset}"
            )
        return dataclasses.replace(
            self,
            committed_offset=last_offset,
            flushes=self.flushes + 1,
            rows=self.rows + rows,
            last_files=tuple(sorted(files)),
            values=tuple(sorted(set(values))),
        )

    def vouched_through(self, epoch: int) -> int:
        """The last offset this manifest vouches for among the files of ``epoch``: a file of that
        epoch whose first offset is above it is dead. An epoch too old to be in ``ended`` is held
        to the committed offset."""
        if epoch == self.epoch:
            return self.committed_offset
        return min(self.committed_offset, dict(self.ended).get(epoch, self.committed_offset))

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "committed_offset": self.committed_offset,
                "epoch": self.epoch,
                "owner": self.owner,
                "values": list(self.values),
                "ended": [list(pair) for pair in self.ended],
                "flushes": self.flushes,
                "rows": self.rows,
                "last_files": list(self.last_files),
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        doc: dict[str, Any] = orjson.loads(data)
        return cls(
            topic=str(doc["topic"]),
            partition=int(doc["partition"]),
            committed_offset=int(doc["committed_offset"]),
            flushes=int(doc.get("flushes", 0)),
            rows=int(doc.get("rows", 0)),
            last_files=tuple(doc.get("last_files", ())),
            epoch=int(doc.get("epoch", 0)),
            owner=str(doc.get("owner", "")),
            values=tuple(doc.get("values", ())),
            ended=tuple((int(epoch), int(end)) for epoch, end in doc.get("ended", ())),
        )


def manifest_vouches(key: str, through: int) -> bool:
    """Whether a data file this writer built is vouched for up to offset ``through``."""
    name = parse_data_file(key)
    assert name is not None, key
    return name.first_offset <= through


def orphan_files(manifest: Manifest, keys: Iterable[str], below_epoch: int | None = None) -> list[str]:
    """Data files of the manifest's partition that no manifest vouches for (first offset > N) —
    and, with ``below_epoch``, only those written under an older epoch (never a newer writer's),
    together with the files of an ``ended`` epoch above the offset at which it ended."""
    orphans = []
    for key in keys:
        name = parse_data_file(key)
        if name is None or name.partition != manifest.partition:
            continue
        if below_epoch is not None and name.epoch >= below_epoch:
            continue
        if name.first_offset > manifest.vouched_through(name.epoch):
            orphans.append(key)
    return sorted(orphans)
