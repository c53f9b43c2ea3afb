"""Session statistics over rows of the sessions table (Arrow in, a JSON-ready dict out)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def _quantiles(values: pa.ChunkedArray | pa.Array) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    median, p90 = pc.quantile(values, q=[0.5, 0.9]).to_pylist()
    return median, p90


def _summary(table: pa.Table) -> dict[str, Any]:
    median, p90 = _quantiles(table.column("duration_s"))
    events = table.column("event_count")
    events_median, _ = _quantiles(events)
    return {
        "sessions": table.num_rows,
        "duration_s": {"median": median, "p90": p90},
        "events_per_session": {
            "mean": pc.mean(events).as_py() if table.num_rows else None,
            "median": events_median,
        },
    }


def in_range(table: pa.Table, start_ms: int | None, end_ms: int | None) -> pa.Table:
    """Sessions that started in ``[start_ms, end_ms)`` (either bound open when None)."""
    if not table.num_rows or (start_ms is None and end_ms is None):
        return table
    # Iceberg reads timestamps back in microseconds: compare in milliseconds whatever the unit.
    starts = pc.cast(pc.cast(table.column("session_start"), pa.timestamp("ms", tz="UTC")), pa.int64())
    keep = pc.and_(
        pc.greater_equal(starts, start_ms if start_ms is not None else -(2**62)),
        pc.less(starts, end_ms if end_ms is not None else 2**62),
    )
    return table.filter(keep)


def session_stats(table: pa.Table) -> dict[str, Any]:
    """Count, median/p90 duration and events per session, overall and by platform."""
    stats = _summary(table)
    platforms = table.column("platform").fill_null("(none)") if table.num_rows else pa.array([], pa.string())
    stats["by_platform"] = {
        platform: _summary(table.filter(pc.equal(platforms, platform)))
        for platform in sorted(set(platforms.to_pylist()))
    }
    return stats
