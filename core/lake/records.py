"""Lake rows: a Kafka record of a per-event topic, parsed once, with its partition value."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import orjson

from core.lake.layout import PartitionValue, partition_for_ms

ENVELOPE_TIMES = ("client_ts", "server_ts")


class LakeRow(NamedTuple):
    """One Kafka record: where it came from and its decoded envelope (None when undecodable).

    A NamedTuple: one is built per consumed record, and tuples are the cheapest immutable objects."""

    partition: int
    offset: int
    kafka_ts_ms: int
    raw: bytes
    event: dict[str, Any] | None

    @property
    def properties(self) -> dict[str, Any]:
        props = self.event.get("properties") if self.event else None
        return props if isinstance(props, dict) else {}


def decode(partition: int, offset: int, kafka_ts_ms: int, raw: bytes) -> LakeRow:
    """Parse a JSON envelope; an undecodable record is kept (as raw text) rather than dropped."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        event = None
    return LakeRow(partition, offset, kafka_ts_ms, raw, event if isinstance(event, dict) else None)


def epoch_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return None


def partition_value(row: LakeRow, time_source: Literal["server", "client"]) -> PartitionValue:
    """Hive partition from the server (or client) timestamp, falling back to the other one and
    finally to the Kafka record timestamp, so every row has a home."""
    first, second = ("server_ts", "client_ts") if time_source == "server" else ("client_ts", "server_ts")
    event = row.event or {}
    for name in (first, second):
        ms = epoch_ms(event.get(name))
        if ms is not None and 0 <= ms < 253_402_300_800_000:  # before year 10000
            return partition_for_ms(ms)
    return partition_for_ms(row.kafka_ts_ms)
