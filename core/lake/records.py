"""Lake records: what a buffer holds (the raw Kafka record) and what a flush decodes it into.

Buffers hold :class:`RawRecord` — the record's bytes and coordinates, nothing decoded — so the
memory they account for is what they really hold, and decoding runs once per flush over the whole
batch (:func:`decode_records`) with the wire codec the edge passes in (JSON, or Avro through the
schema registry).
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from core.envelope import parse_json_event
from core.errors import TransientError
from core.lake.layout import PartitionValue, partition_for_ms

ENVELOPE_TIMES = ("client_ts", "server_ts")
EventDecoder = Callable[[bytes], dict[str, Any]]
"""Bytes of a record → its event; raises (not TransientError) for a record that cannot be read."""


class RawRecord(NamedTuple):
    """One buffered Kafka record, as received."""

    partition: int
    offset: int
    kafka_ts_ms: int
    raw: bytes


# A buffered record's memory besides its bytes' payload: the tuple, its list slot, the bytes object's
# header and the two large ints (offset, timestamp; small partition numbers are shared objects).
RECORD_OVERHEAD_BYTES = (
    sys.getsizeof(RawRecord(0, 0, 0, b"")) + 8 + sys.getsizeof(b"") + 2 * sys.getsizeof(2**40)
)


def record_bytes(record: RawRecord) -> int:
    """Memory a buffered record holds (exact up to the allocator's rounding)."""
    return len(record.raw) + RECORD_OVERHEAD_BYTES


class LakeRow(NamedTuple):
    """One Kafka record: where it came from and its decoded envelope (None when undecodable, and
    then ``error`` says why).

    A NamedTuple: one is built per record of a flush, and tuples are the cheapest immutable objects."""

    partition: int
    offset: int
    kafka_ts_ms: int
    raw: bytes
    event: dict[str, Any] | None
    error: str | None = None

    @property
    def properties(self) -> dict[str, Any]:
        props = self.event.get("properties") if self.event else None
        return props if isinstance(props, dict) else {}

    def raw_text(self) -> str:
        """``_raw``: the bytes as UTF-8 text, or ``base64:…`` when they are not UTF-8 (Avro)."""
        try:
            return self.raw.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(self.raw).decode()

    def quarantined(self, error: str) -> LakeRow:
        """The same record kept only as ``_raw``, with the reason in ``_error``."""
        return self._replace(event=None, error=error)


def decode_record(record: RawRecord, decoder: EventDecoder = parse_json_event) -> LakeRow:
    """Decode one record; an undecodable one is kept (as ``_raw``, the error named) rather than
    dropped. A transient failure (the schema registry away) propagates: the flush is retried."""
    try:
        event: dict[str, Any] | None = decoder(record.raw)
        error = None
    except TransientError:
        raise
    except Exception as exc:
        event, error = None, f"{type(exc).__name__}: {exc}"
    if event is not None and not isinstance(event, dict):
        event, error = None, f"not an object: {type(event).__name__}"
    return LakeRow(record.partition, record.offset, record.kafka_ts_ms, record.raw, event, error)


def decode_records(records: Iterable[RawRecord], decoder: EventDecoder = parse_json_event) -> list[LakeRow]:
    """:func:`decode_record` over a batch (the loop inlined: it runs once per record of a flush)."""
    rows: list[LakeRow] = []
    append = rows.append
    for partition, offset, kafka_ts_ms, raw in records:
        try:
            event = decoder(raw)
        except TransientError:
            raise
        except Exception:
            append(decode_record(RawRecord(partition, offset, kafka_ts_ms, raw), decoder))
            continue
        if type(event) is dict:
            append(LakeRow(partition, offset, kafka_ts_ms, raw, event))
        else:
            append(decode_record(RawRecord(partition, offset, kafka_ts_ms, raw), decoder))
    return rows


def decode(partition: int, offset: int, kafka_ts_ms: int, raw: bytes) -> LakeRow:
    """One JSON record (tests and tools)."""
    return decode_record(RawRecord(partition, offset, kafka_ts_ms, raw))


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
