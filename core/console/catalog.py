"""The event-type catalogue of a lane, shaped from what each source reported (pure, no I/O).

Three sources, each read elsewhere (``streams.console_catalog``) and each allowed to be missing:

* **rates** — the realtime stage's published event counts per window and ``event_name`` (the
  ``/api/v1/counts`` partials): events in the last complete window, per second, and the first and
  last window that held the type within the realtime history;
* **lake tables** — columns (with types, and for Iceberg the event property each holds), rows,
  files and the first and last ``dt=…/hour=…`` partition;
* **dead letters** — the tail of the lane's DLQ topic, grouped by event name and ``reason`` header,
  with a few samples each.

Types are keyed by their lake table name (``core.routing.naming.topic_name_for`` of the event
name), so one type's realtime name, table and dead letters meet; a name the router refuses has no
table and keeps its own name as key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from core.errors import SchemaError
from core.lake.layout import is_event_table
from core.routing.naming import topic_name_for

SAMPLE_CHARS = 400
SAMPLES_PER_REASON = 3
HOUR_MS = 3_600_000
UNNAMED = ""  # the group of dead letters whose bytes name no event


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ topic: its router headers and the start of its original bytes."""

    reason: str
    detail: str
    event_name: str | None
    partition: int
    offset: int
    timestamp_ms: int | None
    sample: str


def dead_letter(
    headers: Sequence[tuple[str, str | bytes | None]] | None,
    value: bytes | None,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
) -> DeadLetter:
    """A DLQ record as the router wrote it (``core.routing.classify.BatchClassifier.dead_letter``)."""
    found = {name: _text(raw) for name, raw in headers or ()}
    data = value or b""
    return DeadLetter(
        reason=found.get("reason") or "unknown",
        detail=found.get("detail", ""),
        event_name=_event_name(data),
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        sample=data[: SAMPLE_CHARS * 4].decode("utf-8", "replace")[:SAMPLE_CHARS],
    )


def _text(raw: str | bytes | None) -> str:
    return raw if isinstance(raw, str) else (raw or b"").decode("utf-8", "replace")


def _event_name(value: bytes) -> str | None:
    """The ``event_name`` of a JSON event, or None (not JSON, another wire format, no name)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    name = doc.get("event_name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class LakeTable:
    """What the lake holds of one table (``rows`` is None where only files were listed)."""

    name: str
    columns: list[dict[str, str]]
    files: int = 0
    bytes: int = 0
    rows: int | None = None
    first_partition: str | None = None
    last_partition: str | None = None


@dataclass
class Rate:
    last_window_events: int = 0
    history_events: int = 0
    first_ms: int | None = None
    last_ms: int | None = None


@dataclass(frozen=True)
class Rates:
    window_s: int
    last_complete_ms: int | None  # start of the newest complete window
    by_name: dict[str, Rate] = field(default_factory=dict)


def rates(windows: Iterable[Mapping[str, Any]], window_s: int) -> Rates:
    """Per event name, from merged event-count windows (``core.realtime.partials.merge`` rows)."""
    rows = sorted(windows, key=lambda row: int(row["window_start"]))
    complete = [int(row["window_start"]) for row in rows if row["complete"]]
    last_complete = complete[-1] if complete else None
    found: dict[str, Rate] = {}
    for row in rows:
        start = int(row["window_start"])
        for name, count in row["counts"]["by"].get("event_name", {}).items():
            if not count:
                continue
            rate = found.setdefault(name, Rate())
            rate.history_events += int(count)
            rate.first_ms = start if rate.first_ms is None else min(rate.first_ms, start)
            rate.last_ms = start + window_s * 1000
            if start == last_complete:
                rate.last_window_events = int(count)
    return Rates(window_s, last_complete, found)


def table_of(event_name: str) -> str | None:
    try:
        return topic_name_for(event_name)
    except SchemaError:
        return None


def partition_ms(partition: str | None) -> int | None:
    """Start of a ``dt=YYYY-MM-DD/hour=HH`` partition in epoch ms (None when not one)."""
    if not partition:
        return None
    parts = dict(part.split("=", 1) for part in partition.split("/") if "=" in part)
    try:
        day = datetime.strptime(parts["dt"], "%Y-%m-%d").replace(tzinfo=UTC)
        return int(day.timestamp() * 1000) + int(parts.get("hour", "0")) * HOUR_MS
    except (KeyError, ValueError):
        return None


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _dlq_groups(letters: Sequence[DeadLetter]) -> dict[str, dict[str, list[DeadLetter]]]:
    groups: dict[str, dict[str, list[DeadLetter]]] = {}
    for letter in letters:
        key = UNNAMED if letter.event_name is None else (table_of(letter.event_name) or letter.event_name)
        groups.setdefault(key, {}).setdefault(letter.reason, []).append(letter)
    return groups


def dlq_summary(by_reason: Mapping[str, list[DeadLetter]]) -> dict[str, Any]:
    """Counts per reason, newest samples first."""
    reasons = []
    for reason, letters in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        newest = sorted(letters, key=lambda letter: (letter.timestamp_ms or 0, letter.offset), reverse=True)
        samples = [
            {
                "detail": letter.detail,
                "value": letter.sample,
                "partition": letter.partition,
                "offset": letter.offset,
                "at": iso(letter.timestamp_ms),
            }
            for letter in newest[:SAMPLES_PER_REASON]
        ]
        reasons.append({"reason": reason, "count": len(letters), "samples": samples})
    return {"count": sum(len(letters) for letters in by_reason.values()), "reasons": reasons}


def _seen(rate: Rate | None, table: LakeTable | None) -> tuple[int | None, int | None]:
    """First and last seen. The realtime windows are exact to a window but cover only its history;
    the lake's partitions cover everything, to the hour. The lake's hour wins only where it says
    more: a first hour before the realtime's first window's hour, a last hour after its last window."""
    first = rate.first_ms if rate is not None else None
    last = rate.last_ms if rate is not None else None
    if table is not None:
        lake_first, lake_last = partition_ms(table.first_partition), partition_ms(table.last_partition)
        if lake_first is not None and (first is None or lake_first + HOUR_MS <= first):
            first = lake_first
        if lake_last is not None and (last is None or lake_last >= last):
            last = lake_last
    return first, last


def catalog(
    lane: str,
    found_rates: Rates | None,
    tables: Mapping[str, LakeTable] | None,
    letters: Sequence[DeadLetter] | None,
) -> dict[str, Any]:
    """The ``/api/v1/catalog`` answer: one entry per event type, sorted by name. A source given as
    None could not be read: its fields are null (not zero)."""
    names: dict[str, str] = {}  # key → event name as best known
    for name in found_rates.by_name if found_rates else ():
        names[table_of(name) or name] = name
    for table_name in tables or ():
        if is_event_table(table_name):  # not the lane's common or sessions table
            names.setdefault(table_name, table_name)
    groups = _dlq_groups(letters or ())
    for key in groups:
        if key != UNNAMED:
            names.setdefault(key, key)
    window_s = found_rates.window_s if found_rates else None
    types = []
    for key, name in sorted(names.items(), key=lambda item: item[1]):
        rate = found_rates.by_name.get(name) if found_rates else None
        table = (tables or {}).get(key)
        first, last = _seen(rate, table)
        types.append(
            {
                "event_name": name,
                "table": key if table_of(name) == key or table is not None else None,
                **_rate_fields(found_rates, rate),
                "first_seen": iso(first),
                "last_seen": iso(last),
                "lake": None if table is None else _lake(table),
                "columns": [] if table is None else table.columns,
                "dlq": dlq_summary(groups.get(key, {})) if letters is not None else None,
            }
        )
    return {
        "lane": lane,
        "window_s": window_s,
        "last_complete_window": iso(found_rates.last_complete_ms) if found_rates else None,
        "types": types,
        "unnamed_dlq": dlq_summary(groups.get(UNNAMED, {})) if letters is not None else None,
        "dlq_read": None if letters is None else len(letters),
    }


def _rate_fields(found_rates: Rates | None, rate: Rate | None) -> dict[str, Any]:
    """Null without realtime counts; zero for a type the counts do not hold."""
    if found_rates is None:
        return {"rate_per_s": None, "events_last_window": None, "events_in_history": None}
    rate = rate or Rate()
    return {
        "rate_per_s": rate.last_window_events / found_rates.window_s,
        "events_last_window": rate.last_window_events,
        "events_in_history": rate.history_events,
    }


def _lake(table: LakeTable) -> dict[str, Any]:
    return {
        "rows": table.rows,
        "files": table.files,
        "bytes": table.bytes,
        "first_partition": table.first_partition,
        "last_partition": table.last_partition,
    }
