"""Closed-window partials: their wire form and their exact sum over partitions.

Each partition's owner publishes one partial per closed window, keyed ``<lane>|<start ms>|<partition>``
to a compacted topic, so re-publishing after a restart replaces the record with an equal one.
Users live in exactly one partition (the topics are keyed by user id), so summing per-partition
distinct counts gives the exact distinct count of the cluster. A partition that has no record for a
window but has closed past it (its latest checkpoint's ``closed_until``) contributed zero; one that
has not closed past it yet makes the window incomplete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any, Literal

from core.realtime.windows import Checkpoint, ClosedWindow, Counts

Measure = Literal["users", "users_sliding", "events"]


def window_label(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def partial_key(lane: str, start_ms: int, partition: int) -> str:
    return f"{lane}|{start_ms}|{partition}"


def to_record(
    lane: str, window: ClosedWindow, partitions: int, window_s: int, sliding_s: int
) -> dict[str, Any]:
    return {
        "v": 1,
        "lane": lane,
        "partition": window.partition,
        "partitions": partitions,
        "window_start": window.start_ms,
        "window_s": window_s,
        "sliding_s": sliding_s,
        "users": window.users,
        "users_sliding": window.users_sliding,
        "events": window.events,
        "checkpoint": asdict(window.checkpoint),
    }


def checkpoint_of(record: Mapping[str, Any]) -> Checkpoint:
    return Checkpoint(**record["checkpoint"])


def latest_checkpoint(records: Iterable[Mapping[str, Any]], partition: int) -> Checkpoint | None:
    best: Mapping[str, Any] | None = None
    for record in records:
        if record["partition"] == partition and (
            best is None or record["window_start"] > best["window_start"]
        ):
            best = record
    return checkpoint_of(best) if best is not None else None


def _add(total: dict[str, Any], counts: Counts) -> None:
    total["all"] += counts["all"]
    by: dict[str, dict[str, int]] = total["by"]
    for dim, values in counts["by"].items():  # type: ignore[attr-defined]
        target = by.setdefault(dim, {})
        for value, count in values.items():
            target[value] = target.get(value, 0) + count


def merge(
    records: Iterable[Mapping[str, Any]], measure: Measure, from_ms: int, to_ms: int
) -> list[dict[str, Any]]:
    """Per window start in ``[from_ms, to_ms)``: summed counts, which partitions reported, completeness."""
    records = list(records)
    closed_until: dict[int, int] = {}
    partitions = 0
    window_ms = 0
    for record in records:
        partitions = max(partitions, int(record["partitions"]))
        window_ms = int(record["window_s"]) * 1000
        p = int(record["partition"])
        closed_until[p] = max(closed_until.get(p, 0), int(record["checkpoint"]["closed_until"]))
    sums: dict[int, dict[str, Any]] = defaultdict(lambda: {"all": 0, "by": {}})
    reported: dict[int, set[int]] = defaultdict(set)
    for record in records:
        start = int(record["window_start"])
        if from_ms <= start < to_ms:
            _add(sums[start], record[measure])
            reported[start].add(int(record["partition"]))
    rows = []
    for start in sorted(sums):
        done = all(
            p in reported[start] or closed_until.get(p, -1) >= start + window_ms for p in range(partitions)
        )
        rows.append(
            {
                "window_start": start,
                "counts": sums[start],
                "partitions_reported": sorted(reported[start]),
                "partitions": partitions,
                "complete": done,
            }
        )
    return rows


def flatten(rows: list[dict[str, Any]], by: str | None) -> list[dict[str, Any]]:
    """Rows fit for a table/time-series panel (Grafana Infinity): one per window and value."""
    flat: list[dict[str, Any]] = []
    for row in rows:
        common = {"window_start": row["window_start"], "complete": row["complete"]}
        if by is None:
            flat.append({**common, "value": row["counts"]["all"]})
        else:
            for value, count in sorted(row["counts"]["by"].get(by, {}).items()):
                flat.append({**common, by: value, "value": count})
    return flat
