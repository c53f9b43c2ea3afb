"""The per-partition offset manifest: "offsets up to N of this topic-partition are in the lake".

Protocol (see docs/lake.md): a flush writes its data files first, then the manifest that vouches for
them. A data file whose first offset is above the manifest's ``committed_offset`` was written by a
flush that never finished; recovery deletes it (and replay would rewrite the same key anyway).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.lake.layout import parse_data_file

NO_OFFSET = -1


@dataclass(frozen=True)
class Manifest:
    topic: str
    partition: int
    committed_offset: int = NO_OFFSET
    flushes: int = 0
    rows: int = 0
    last_files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def next_offset(self) -> int:
        """The first offset not yet in the lake: where consumption resumes."""
        return self.committed_offset + 1

    def advanced(self, last_offset: int, rows: int, files: Iterable[str]) -> Manifest:
        if last_offset <= self.committed_offset:
            raise ValueError(
                f"{self.topic}[{self.partition}]: manifest cannot move back from "
                f"{self.committed_offset} to {last_offset}"
            )
        return Manifest(
            self.topic, self.partition, last_offset, self.flushes + 1, self.rows + rows, tuple(sorted(files))
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": 1,
                "topic": self.topic,
                "partition": self.partition,
                "committed_offset": self.committed_offset,
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
        )


def orphan_files(manifest: Manifest, keys: Iterable[str]) -> list[str]:
    """Data files of the manifest's partition that no manifest vouches for (first offset > N)."""
    orphans = []
    for key in keys:
        name = parse_data_file(key)
        if (
            name is not None
            and name.partition == manifest.partition
            and name.first_offset > manifest.committed_offset
        ):
            orphans.append(key)
    return sorted(orphans)
