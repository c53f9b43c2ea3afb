"""Funnels and paths computed in plain Python from event dicts: the reference the analytics SQL
(``core.analytics``) is checked against, written from the definitions in docs/analytics.md."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

Event = dict[str, Any]  # user_id, event_name, event_id, server_ts (epoch ms), platform


def timelines(
    events: Iterable[Event], start_ms: int | None = None, end_ms: int | None = None
) -> dict[str, list[Event]]:
    """Each user's events inside [start_ms, end_ms), ordered by (server_ts, event_id)."""
    users: dict[str, list[Event]] = {}
    for event in events:
        ts = event["server_ts"]
        if event.get("user_id") is None or ts is None:
            continue
        if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
            continue
        users.setdefault(event["user_id"], []).append(event)
    for line in users.values():
        line.sort(key=lambda event: (event["server_ts"], event["event_id"]))
    return users


def _attempt(line: list[Event], start: int, steps: Sequence[str], within_ms: int, strict: bool) -> list[int]:
    """Indices of the steps one attempt from ``start`` reaches."""
    reached = [start]
    for step in steps[1:]:
        after = reached[-1] + 1
        candidates = [after] if strict else range(after, len(line))
        found = next((i for i in candidates if i < len(line) and line[i]["event_name"] == step), None)
        if found is None or line[found]["server_ts"] - line[start]["server_ts"] > within_ms:
            break
        reached.append(found)
    return reached


def funnel(
    events: Iterable[Event],
    steps: Sequence[str],
    within_ms: int,
    strict: bool = False,
    by: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> dict[str, Any]:
    """``{"users": [...], "medians_s": [None, ...], "groups": {value: users per step}}``."""
    chosen: list[tuple[Event, list[Event]]] = []  # (first event, reached events) per user
    for line in timelines(events, start_ms, end_ms).values():
        best: list[int] | None = None
        for index, event in enumerate(line):
            if event["event_name"] != steps[0]:
                continue
            attempt = _attempt(line, index, steps, within_ms, strict)
            if best is None or len(attempt) > len(best):
                best = attempt
        if best is not None:
            chosen.append((line[best[0]], [line[i] for i in best]))
    users = [sum(1 for _, reached in chosen if len(reached) > k) for k in range(len(steps))]
    medians: list[float | None] = [None]
    for k in range(1, len(steps)):
        gaps = [(r[k]["server_ts"] - r[k - 1]["server_ts"]) / 1000 for _, r in chosen if len(r) > k]
        medians.append(statistics.median(gaps) if gaps else None)
    groups: dict[str, list[int]] = {}
    if by is not None:
        for first, reached in chosen:
            counts = groups.setdefault(str(first.get(by)), [0] * len(steps))
            for k in range(len(reached)):
                counts[k] += 1
    return {"users": users, "medians_s": medians, "groups": groups}


def paths(events: Iterable[Event], anchor: str, depth: int, before: bool = False) -> Counter[tuple[str, ...]]:
    """Users per path after (or before) each user's first ``anchor`` event."""
    counted: Counter[tuple[str, ...]] = Counter()
    for line in timelines(events).values():
        index = next((i for i, event in enumerate(line) if event["event_name"] == anchor), None)
        if index is None:
            continue
        window = line[max(0, index - depth) : index] if before else line[index + 1 : index + 1 + depth]
        counted[tuple(event["event_name"] for event in window)] += 1
    return counted
