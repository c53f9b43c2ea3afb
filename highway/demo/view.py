"""What ``highway demo`` shows: the live progress table and the closing summary (pure, no I/O).

A :class:`Snapshot` is one measurement of the pipeline from the outside; ``None`` in a field means
that capability has not answered yet and is shown as "not yet available".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

NOT_YET = "not yet available"


@dataclass(frozen=True)
class ConcurrencyReading:
    users: int
    window: str = ""


@dataclass(frozen=True)
class Snapshot:
    elapsed_s: float
    phase: str
    target: int
    produced: int | None
    event_topics: int | None
    routed: int | None
    common: int | None
    dlq: int | None
    lake_files: int | None
    lake_rows: int | None
    lake_buffered: int | None
    concurrency: ConcurrencyReading | None
    worker: str

    @property
    def progress_key(self) -> tuple[int | None, ...]:
        """The figures whose change means the pipeline is still moving."""
        return (
            self.produced,
            self.routed,
            self.dlq,
            self.common,
            self.lake_files,
            self.lake_rows,
            self.lake_buffered,
        )

    @property
    def router_done(self) -> bool:
        """Every produced event is in its per-event topic or the DLQ."""
        return bool(self.produced) and (self.routed or 0) + (self.dlq or 0) >= (self.produced or 0)

    @property
    def lake_done(self) -> bool:
        """Every routed event is in a lake file."""
        return bool(self.routed) and (self.lake_rows or 0) >= (self.routed or 0)


def rate(previous: Snapshot | None, current: Snapshot) -> float | None:
    """Events/s produced between two snapshots."""
    if previous is None or previous.produced is None or current.produced is None:
        return None
    elapsed = current.elapsed_s - previous.elapsed_s
    return (current.produced - previous.produced) / elapsed if elapsed > 0 else None


def _window_label(start_ms: Any) -> str:
    if isinstance(start_ms, int | float) and not isinstance(start_ms, bool):
        return datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("window %H:%M:%S UTC")
    return f"window {start_ms}"


def latest_concurrency(payload: Any) -> ConcurrencyReading | None:
    """The newest overall figure in a ``/api/v1/concurrency`` answer, preferring complete windows.

    The answer's ``rows`` are ``{"window_start": ms, "complete": bool, "value": users}``; a window is
    complete once every partition has published it, so its figure is final and exact.
    """
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        return None
    valid = [
        row
        for row in rows
        if isinstance(row, dict) and isinstance(row.get("value"), int) and "window_start" in row
    ]
    if not valid:
        return None
    complete = [row for row in valid if row.get("complete")]
    newest = max(complete or valid, key=lambda row: row["window_start"])
    suffix = "" if complete else " (still open)"
    return ConcurrencyReading(users=newest["value"], window=_window_label(newest["window_start"]) + suffix)


def _count(value: int | None, unit: str = "") -> str:
    return NOT_YET if value is None else f"{value:,}{unit}"


def progress_table(snapshot: Snapshot, events_per_s: float | None, lane: str) -> Table:
    """The live view: one row per stage."""
    table = Table(title=f"highway demo — lane {lane} — {snapshot.phase} — {snapshot.elapsed_s:,.0f}s")
    table.add_column("stage")
    table.add_column("progress", justify="right")
    table.add_column("detail")
    if snapshot.produced is not None and snapshot.produced >= snapshot.target:
        speed = "done"
    else:
        speed = "" if events_per_s is None else f"{events_per_s:,.0f} events/s"
    table.add_row("simulator", f"{_count(snapshot.produced)} / {snapshot.target:,}", speed)
    if snapshot.event_topics:
        routed = f"{_count(snapshot.routed)} routed"
        detail = f"{snapshot.event_topics} per-event topics, {_count(snapshot.dlq)} dead letters"
    else:
        routed, detail = NOT_YET, "no per-event topic yet"
    table.add_row("router", routed, detail)
    buffered = "" if snapshot.lake_buffered is None else f", {snapshot.lake_buffered:,} rows buffered"
    if snapshot.lake_files:
        files = f"{snapshot.lake_files:,} Parquet files{buffered}"
        table.add_row("lake", f"{_count(snapshot.lake_rows)} rows", files)
    elif snapshot.lake_buffered:
        table.add_row("lake", "0 rows", f"no Parquet file yet{buffered}")
    else:
        table.add_row("lake", NOT_YET, "no Parquet file yet")
    if snapshot.concurrency is not None:
        reading = snapshot.concurrency
        table.add_row("realtime", f"{reading.users:,} users", f"concurrency {reading.window}".strip())
    else:
        table.add_row("realtime", NOT_YET, "/api/v1/concurrency")
    table.add_row("worker", snapshot.worker, "")
    return table


def progress_line(snapshot: Snapshot, events_per_s: float | None) -> str:
    """The same figures on one line, for logs and non-terminal output."""
    speed = "" if events_per_s is None else f" ({events_per_s:,.0f}/s)"
    concurrency = NOT_YET if snapshot.concurrency is None else f"{snapshot.concurrency.users:,}"
    return (
        f"[{snapshot.elapsed_s:6.1f}s {snapshot.phase}] produced {_count(snapshot.produced)}{speed}"
        f" | topics {_count(snapshot.event_topics)} routed {_count(snapshot.routed)}"
        f" dlq {_count(snapshot.dlq)}"
        f" | lake files {_count(snapshot.lake_files)} rows {_count(snapshot.lake_rows)}"
        f" buffered {_count(snapshot.lake_buffered)}"
        f" | concurrency {concurrency} | worker {snapshot.worker}"
    )


@dataclass
class DemoSummary:
    lane: str
    final: Snapshot
    truth_file: str
    all_events_topic: str
    event_topic_example: str
    dlq_topic: str
    lake_uri: str
    worker_url: str
    worker_log: str
    verify: str
    stack: str
    query_table: str | None = None
    stack_running: bool = True
    notes: list[str] = field(default_factory=list)


def summary_lines(summary: DemoSummary) -> list[str]:
    """The closing summary: what ran, what came out and where it is."""
    final = summary.final
    lake_dir = f"{summary.lake_uri}/{summary.lane}/"
    lines = [
        "Highway demo summary",
        f"  lane          {summary.lane}",
        f"  produced      {_count(final.produced)} events into {summary.all_events_topic}"
        f" (ground truth: {summary.truth_file})",
        f"  routed        {_count(final.routed)} events into {_count(final.event_topics)} per-event topics"
        f" ({summary.event_topic_example}), {_count(final.dlq)} into {summary.dlq_topic}",
        f"  lake          {_count(final.lake_rows)} rows in {_count(final.lake_files)} Parquet files under"
        f" {lake_dir}",
        "  concurrency   "
        + (
            NOT_YET
            if final.concurrency is None
            else f"{final.concurrency.users:,} users {final.concurrency.window}"
        ),
        f"  verify        {summary.verify}",
        f"  worker        stopped; log {summary.worker_log}",
        f"  local stack   {summary.stack}",
        "Next:"
        if summary.stack_running
        else "Next (the stack was stopped; `highway dev up` starts it again, but the local S3 API kept "
        "objects in memory only):",
        '  eval "$(highway dev up)"    # reuses the stack and exports its HIGHWAY_* settings',
        f"  highway verify --truth {summary.truth_file}",
    ]
    if summary.query_table:
        sql = f"select platform, count(*) from {summary.query_table} group by 1"
        lines.append(f'  highway query --lane {summary.lane} "{sql}"')
    lines += [
        f"  {summary.worker_url}/metrics is what Prometheus scrapes (while a worker runs);",
        "  `docker compose up` runs Prometheus and the provisioned Grafana dashboard (http://localhost:3000).",
    ]
    lines += [f"  note: {note}" for note in summary.notes]
    return lines
