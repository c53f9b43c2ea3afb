"""User paths: the most common sequences of events after (or before) a chosen event, and the same
as Sankey data.

For each user with the event in the range, the anchor is their *first* such event; the path is the
next ``depth`` events of the user (``after``) or the ``depth`` events before it (``before``, listed
in time order, the one just before the anchor last), in (``server_ts``, ``event_id``) order — shorter
when the user has fewer. Paths are counted in users; the top ``top`` by users (ties: by path).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from core.analytics.params import PathSpec
from core.analytics.sql import Source, literal


def paths_sql(spec: PathSpec, source: Source) -> str:
    """Rows ``(steps, users, anchored)``: the top paths and how many users had the event at all."""
    ts = source.dialect.ts_ms("server_ts")
    span = source.range_filter(spec.span)
    event = literal(spec.event)
    if spec.direction == "after":
        window = f"e.seq BETWEEN a.seq0 + 1 AND a.seq0 + {spec.depth}"
    else:
        window = f"e.seq BETWEEN a.seq0 - {spec.depth} AND a.seq0 - 1"
    return f"""WITH ev AS (
    SELECT user_id, event_name, row_number() OVER (PARTITION BY user_id ORDER BY {ts}, event_id) AS seq
    FROM {source.relation}
    WHERE user_id IS NOT NULL AND server_ts IS NOT NULL{span}
    AND user_id IN (
        SELECT user_id FROM {source.relation}
        WHERE event_name = {event} AND user_id IS NOT NULL AND server_ts IS NOT NULL{span}
    )
),
anchor AS (
    SELECT user_id, min(seq) AS seq0 FROM ev WHERE event_name = {event} GROUP BY user_id
),
walk AS (
    SELECT a.user_id, list(e.event_name ORDER BY e.seq) FILTER (WHERE e.seq IS NOT NULL) AS steps
    FROM anchor a LEFT JOIN ev e ON e.user_id = a.user_id AND {window}
    GROUP BY a.user_id
)
SELECT coalesce(steps, []::VARCHAR[]) AS steps, count(*) AS users, sum(count(*)) OVER () AS anchored
FROM walk GROUP BY 1 ORDER BY users DESC, steps LIMIT {spec.top}"""


def sankey(spec: PathSpec, paths: Sequence[tuple[list[str], int]]) -> dict[str, Any]:
    """Nodes (an event at a position relative to the anchor, ``0`` being the anchor) and links with
    the users of ``paths`` that go from one to the next; node names are unique (``+1 team_create``)."""
    nodes: dict[tuple[int, str], int] = {(0, spec.event): 0}
    links: dict[tuple[int, int], int] = {}
    for steps, users in paths:
        offsets = range(1, len(steps) + 1) if spec.direction == "after" else range(-len(steps), 0)
        chain = list(zip(offsets, steps, strict=True))
        chain = [(0, spec.event), *chain] if spec.direction == "after" else [*chain, (0, spec.event)]
        indices = [nodes.setdefault(node, len(nodes)) for node in chain]
        for source, target in pairwise(indices):
            links[(source, target)] = links.get((source, target), 0) + users
    return {
        "nodes": [
            {"name": spec.event if offset == 0 else f"{offset:+d} {name}", "event": name, "step": offset}
            for (offset, name) in nodes
        ],
        "links": [{"source": s, "target": t, "value": value} for (s, t), value in links.items()],
    }


def paths_result(spec: PathSpec, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """``{"users", "paths": [{"steps", "users"}], "sankey": {...}}`` from the rows of :func:`paths_sql`."""
    paths = [(list(steps), int(users)) for steps, users, _ in rows]
    return {
        "event": spec.event,
        "direction": spec.direction,
        "users": int(rows[0][2]) if rows else 0,
        "paths": [{"steps": steps, "users": users} for steps, users in paths],
        "sankey": sankey(spec, paths),
    }
