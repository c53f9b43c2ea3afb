"""The sessions table's columns, and closed sessions as one Arrow table (what a commit writes)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from core.lake.encode import TIMESTAMP_TYPE
from core.lake.layout import SESSIONS_TABLE as SESSIONS_TABLE
from core.lake.layout import partition_for_ms
from core.sessions.model import ClosedSession

COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("lane", pa.string()),
    ("user_id", pa.string()),
    ("session_id", pa.string()),
    ("session_key", pa.string()),
    ("session_start", TIMESTAMP_TYPE),
    ("session_end", TIMESTAMP_TYPE),
    ("duration_s", pa.float64()),
    ("event_count", pa.int64()),
    ("first_event", pa.string()),
    ("last_event", pa.string()),
    ("platform", pa.string()),
    ("app_version", pa.string()),
    ("late_events", pa.int64()),
    ("_kafka_partition", pa.int32()),
    ("_closing_offset", pa.int64()),
    ("dt", pa.string()),
    ("hour", pa.string()),
)
SCHEMA = pa.schema([pa.field(name, kind) for name, kind in COLUMNS])


def sessions_table(lane: str, rows: Sequence[ClosedSession]) -> pa.Table:
    """The rows as Arrow; ``dt``/``hour`` (UTC) from ``session_start``."""
    values = [partition_for_ms(row.start_ms) for row in rows]
    columns = {
        "lane": [lane] * len(rows),
        "user_id": [row.user_id for row in rows],
        "session_id": [row.session_id for row in rows],
        "session_key": [row.session_key for row in rows],
        "session_start": [row.start_ms for row in rows],
        "session_end": [row.end_ms for row in rows],
        "duration_s": [row.duration_s for row in rows],
        "event_count": [row.event_count for row in rows],
        "first_event": [row.first_event for row in rows],
        "last_event": [row.last_event for row in rows],
        "platform": [row.platform for row in rows],
        "app_version": [row.app_version for row in rows],
        "late_events": [row.late_events for row in rows],
        "_kafka_partition": [row.partition for row in rows],
        "_closing_offset": [row.closing_offset for row in rows],
        "dt": [value.dt for value in values],
        "hour": [value.hour for value in values],
    }
    return pa.table({name: pa.array(columns[name], kind) for name, kind in COLUMNS}, schema=SCHEMA)
