"""Funnels: how many users did the steps, in order, within a window — and how fast.

Definitions (``docs/analytics.md``; the integration test computes the same in plain Python):

* A user's events are the common table's rows with a user id and a ``server_ts`` inside the range,
  ordered by (``server_ts``, ``event_id``).
* An *attempt* starts at any event of step 1 and takes, for each next step, the first event of that
  step after the previous step's event (``relaxed``: other events may come between) or the very next
  event if it is that step (``strict``); a step more than ``within`` after the attempt's start ends it.
  Taking the first matching event is never worse for reaching a further step, so an attempt's depth
  is the furthest that start can reach.
* A user's funnel is their deepest attempt, the earliest of those on a tie; the user counts for
  every step up to its depth, the time from step k-1 to k is that attempt's, and ``by`` groups the
  user by the attempt's first event's value of the dimension.

DuckDB takes each next step with an ``ASOF`` join (one sorted merge per step); Athena, which has
none, with a join grouped by the attempt (``min`` and ``min_by`` of the later events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.analytics.params import FunnelSpec
from core.analytics.sql import DUCKDB, Source, literal

GROUP_NONE = "(none)"
"""The group of users whose first event had no value of the dimension."""


def _carried(step: int) -> list[str]:
    """Columns an attempt carries after matching ``step`` steps."""
    return ["user_id", "dim", *(f"{kind}{k}" for k in range(1, step + 1) for kind in ("seq", "ts"))]


def _next_step(spec: FunnelSpec, source: Source, step: int) -> str:
    """CTEs ``j<step>`` (the candidate event of ``step``) and ``m<step>`` (kept when within the window)."""
    previous, name = f"m{step - 1}", literal(spec.steps[step - 1])
    carried = ", ".join(f"p.{column}" for column in _carried(step - 1))
    if spec.order == "strict":
        join = (
            f"SELECT {carried}, e.seq AS rseq, e.ts AS rts FROM {previous} p LEFT JOIN ev e\n"
            f"    ON e.user_id = p.user_id AND e.seq = p.seq{step - 1} + 1 AND e.event_name = {name}"
        )
    elif source.dialect is DUCKDB:
        join = (
            f"SELECT {carried}, e.seq AS rseq, e.ts AS rts FROM {previous} p ASOF LEFT JOIN\n"
            f"    (SELECT user_id, seq, ts FROM ev WHERE event_name = {name}) e\n"
            f"    ON e.user_id = p.user_id AND e.seq > p.seq{step - 1}"
        )
    else:
        join = (
            f"SELECT {carried}, min(e.seq) AS rseq, min_by(e.ts, e.seq) AS rts\n"
            f"    FROM {previous} p LEFT JOIN ev e\n"
            f"    ON e.user_id = p.user_id AND e.event_name = {name} AND e.seq > p.seq{step - 1}\n"
            f"    GROUP BY {carried}"
        )
    kept = ", ".join(_carried(step - 1))
    inside = f"rts - ts1 <= {spec.within_ms}"
    return (
        f"j{step} AS (\n    {join}\n),\n"
        f"m{step} AS (\n    SELECT {kept}, CASE WHEN {inside} THEN rseq END AS seq{step},"
        f" CASE WHEN {inside} THEN rts END AS ts{step}\n    FROM j{step}\n)"
    )


def funnel_sql(spec: FunnelSpec, source: Source) -> str:
    """One row per group (and the total: ``total`` true) with ``users_<k>`` and ``median_ms_<k>``."""
    dialect, steps = source.dialect, spec.steps
    names = ", ".join(literal(step) for step in dict.fromkeys(steps))
    # Strict order needs every event (an event between two steps breaks it); relaxed only the steps'.
    only_steps = "" if spec.order == "strict" else f"\n    AND event_name IN ({names})"
    ts = dialect.ts_ms("server_ts")
    dim = spec.by or "NULL"
    events = (
        f"ev AS (\n    SELECT user_id, event_name, {ts} AS ts, {dim} AS dim,\n"
        f"        row_number() OVER (PARTITION BY user_id ORDER BY {ts}, event_id) AS seq\n"
        f"    FROM {source.relation}\n    WHERE user_id IS NOT NULL AND server_ts IS NOT NULL"
        f"{only_steps}{source.range_filter(spec.span)}\n)"
    )
    first = (
        "m1 AS (\n    SELECT user_id, dim, seq AS seq1, ts AS ts1"
        f" FROM ev WHERE event_name = {literal(steps[0])}\n)"
    )
    later = [_next_step(spec, source, step) for step in range(2, len(steps) + 1)]
    last = len(steps)
    depth = " + ".join(["1", *(f"CASE WHEN seq{k} IS NULL THEN 0 ELSE 1 END" for k in range(2, last + 1))])
    best = (
        f"scored AS (\n    SELECT m{last}.*, {depth} AS depth FROM m{last}\n),\n"
        "best AS (\n    SELECT * FROM (\n        SELECT scored.*, row_number() OVER"
        " (PARTITION BY user_id ORDER BY depth DESC, seq1) AS pick\n"
        "        FROM scored\n    ) ranked WHERE pick = 1\n)"
    )
    measures = [f"sum(CASE WHEN depth >= {k} THEN 1 ELSE 0 END) AS users_{k}" for k in range(1, last + 1)]
    measures += [
        f"{dialect.median_of(f'CASE WHEN depth >= {k} THEN ts{k} - ts{k - 1} END')} AS median_ms_{k}"
        for k in range(2, last + 1)
    ]
    if spec.by:
        head, tail = "grouping(dim) = 1 AS total, dim", "\nGROUP BY GROUPING SETS ((), (dim))"
    else:
        head, tail = "TRUE AS total, NULL AS dim", ""
    select = f"SELECT {head},\n    " + ",\n    ".join(measures) + f"\nFROM best{tail}"
    return "WITH " + ",\n".join([events, first, *later, best]) + "\n" + select


def _steps(spec: FunnelSpec, row: dict[str, Any]) -> list[dict[str, Any]]:
    first = row["users_1"] or 0
    steps, previous = [], first
    for k, name in enumerate(spec.steps, 1):
        users = int(row[f"users_{k}"] or 0)
        median = row.get(f"median_ms_{k}")
        steps.append(
            {
                "name": name,
                "users": users,
                "conversion_from_previous": users / previous if previous else None,
                "conversion_from_first": users / first if first else None,
                "median_seconds_to_convert": None if median is None else float(median) / 1000,
            }
        )
        previous = users
    return steps


def funnel_result(spec: FunnelSpec, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """``{"steps": [...]}`` (and ``"groups"`` with ``by``) from the rows of :func:`funnel_sql`."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    total = next((record for record in records if record["total"]), None)
    empty: dict[str, Any] = {f"users_{k}": 0 for k in range(1, len(spec.steps) + 1)}
    answer: dict[str, Any] = {"steps": _steps(spec, total or empty)}
    if spec.by:
        groups = sorted(
            (GROUP_NONE if record["dim"] is None else str(record["dim"]), record)
            for record in records
            if not record["total"]
        )
        answer["groups"] = {name: _steps(spec, record) for name, record in groups}
    return answer
