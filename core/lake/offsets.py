"""Kafka offsets in an Iceberg snapshot summary, and the fencing decision. Pure.

Every commit of the Iceberg lake puts the table's full per-partition offset map in its snapshot
summary, as the Iceberg Kafka Connect sink does: ``highway.offsets`` = JSON
``{"<topic>/<partition>": <next offset>}`` — "every record of that partition below the next offset
is in this snapshot". The map covers every partition ever committed to the table, not only the ones
of this commit, so the newest snapshot alone answers recovery.

Fencing: a writer commits a partition only if the head's offset for it is still the one the writer
recovered or last committed. Anything else means another writer (the partition's new owner) moved
it: this writer is stale and must not commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

OFFSETS_PROPERTY = "highway.offsets"
TP = tuple[str, int]


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def encode_offsets(offsets: Mapping[str, int]) -> str:
    return orjson.dumps(dict(sorted(offsets.items()))).decode()


def decode_offsets(summary: Mapping[str, str] | None) -> dict[str, int] | None:
    """The offset map of a snapshot summary; None when the snapshot carries none (not ours)."""
    if not summary or OFFSETS_PROPERTY not in summary:
        return None
    raw = orjson.loads(summary[OFFSETS_PROPERTY])
    if not isinstance(raw, dict):
        raise ValueError(f"{OFFSETS_PROPERTY} is not a JSON object: {summary[OFFSETS_PROPERTY]!r}")
    return {str(key): int(value) for key, value in raw.items()}


def latest_offsets(summaries: Iterable[Mapping[str, str] | None]) -> dict[str, int]:
    """The offset map of the newest snapshot that has one (``summaries`` newest first: the head,
    then its parent, …); empty when none has — nothing of any partition is in the table yet.

    Walking back makes a snapshot without the property (a manual delete, another tool) harmless."""
    for summary in summaries:
        offsets = decode_offsets(summary)
        if offsets is not None:
            return offsets
    return {}


def fenced(head: Mapping[str, int], expected: Mapping[str, int | None]) -> list[str]:
    """Partitions (keys) whose offset in the head differs from what this writer expects (None: the
    partition was never committed). A non-empty answer means: do not commit."""
    return sorted(key for key, offset in expected.items() if head.get(key) != offset)


def advanced(head: Mapping[str, int], written: Mapping[str, int]) -> dict[str, int]:
    """The map of the next snapshot: the head's, with the written partitions moved forward."""
    for key, offset in written.items():
        if head.get(key, -1) >= offset:
            raise ValueError(f"{key}: offset cannot move back from {head[key]} to {offset}")
    return {**head, **written}
