"""A user's history in the lake (the 360 view's long memory): first and last seen, events, sessions,
platforms and the last events, from the common table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.analytics.sql import Source, literal

LAST_EVENTS_COLUMNS = ("event_name", "event_id", "server_ts", "session_id", "platform", "app_version")


def summary_sql(user_id: str, source: Source) -> str:
    """One row: first_seen, last_seen, events, sessions, platforms."""
    return (
        "SELECT min(server_ts) AS first_seen, max(server_ts) AS last_seen, count(*) AS events,"
        " count(DISTINCT session_id) AS sessions,"
        " list(DISTINCT platform ORDER BY platform) FILTER (WHERE platform IS NOT NULL) AS platforms"
        f"\nFROM {source.relation} WHERE user_id = {literal(user_id)}"
    )


def last_events_sql(user_id: str, last: int, source: Source) -> str:
    return (
        f"SELECT {', '.join(LAST_EVENTS_COLUMNS)} FROM {source.relation}"
        f"\nWHERE user_id = {literal(user_id)}"
        f"\nORDER BY server_ts DESC NULLS LAST, event_id DESC LIMIT {last}"
    )


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def history_result(summary: Sequence[Any], last_events: Sequence[Sequence[Any]]) -> dict[str, Any]:
    first_seen, last_seen, events, sessions, platforms = summary
    return {
        "first_seen": _iso(first_seen),
        "last_seen": _iso(last_seen),
        "events": int(events or 0),
        "sessions": int(sessions or 0),
        "platforms": list(platforms or []),
        "last_events": [
            {column: _iso(value) for column, value in zip(LAST_EVENTS_COLUMNS, row, strict=True)}
            for row in last_events
        ],
    }
