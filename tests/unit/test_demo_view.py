"""The demo's pure parts: progress figures, concurrency extraction, summary text and pacing."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from highway.demo.pacing import base_rate_for, events_sent_within
from highway.demo.view import (
    NOT_YET,
    ConcurrencyReading,
    DemoSummary,
    Snapshot,
    latest_concurrency,
    progress_line,
    progress_table,
    rate,
    summary_lines,
)

EMPTY = Snapshot(
    elapsed_s=1.0,
    phase="producing",
    target=3000,
    produced=None,
    event_topics=None,
    routed=None,
    common=None,
    dlq=None,
    lake_files=None,
    lake_rows=None,
    lake_buffered=None,
    concurrency=None,
    worker="starting",
)


def rendered(snapshot: Snapshot) -> str:
    console = Console(width=200, record=True)
    console.print(progress_table(snapshot, None, "demo"))
    return console.export_text()


def test_absent_capabilities_read_not_yet_available() -> None:
    text = rendered(EMPTY)
    for stage in ("router", "lake", "realtime"):
        line = next(line for line in text.splitlines() if f" {stage} " in line)
        assert NOT_YET in line, line
    assert progress_line(EMPTY, None).count(NOT_YET) >= 5


def test_present_capabilities_show_their_figures() -> None:
    snapshot = replace(
        EMPTY,
        produced=3000,
        event_topics=42,
        routed=2990,
        dlq=10,
        lake_files=7,
        lake_rows=2990,
        lake_buffered=10,
        concurrency=ConcurrencyReading(812, "12:01"),
        worker="healthy",
    )
    text = rendered(snapshot)
    assert "3,000 / 3,000" in text
    assert "done" in text
    assert "42 per-event topics, 10 dead letters" in text
    assert "2,990 rows" in text
    assert "7 Parquet files, 10 rows buffered" in text
    assert "812 users" in text
    assert NOT_YET not in text
    assert snapshot.router_done
    assert snapshot.lake_done
    assert not replace(snapshot, dlq=9).router_done
    assert not replace(snapshot, lake_rows=2989).lake_done


def test_rate_between_snapshots() -> None:
    first = replace(EMPTY, elapsed_s=10.0, produced=1000)
    second = replace(EMPTY, elapsed_s=12.0, produced=3000)
    assert rate(first, second) == 1000.0
    assert rate(None, second) is None
    assert rate(EMPTY, second) is None


def test_latest_concurrency_prefers_the_newest_complete_window() -> None:
    minute = 60_000
    payload = {
        "lane": "demo",
        "window": "1m",
        "rows": [
            {"window_start": 1 * minute, "complete": True, "value": 120},
            {"window_start": 2 * minute, "complete": True, "value": 130},
            {"window_start": 3 * minute, "complete": False, "value": 40},
        ],
    }
    assert latest_concurrency(payload) == ConcurrencyReading(130, "window 00:02:00 UTC")
    payload["rows"] = payload["rows"][2:]
    assert latest_concurrency(payload) == ConcurrencyReading(40, "window 00:03:00 UTC (still open)")
    assert latest_concurrency({"rows": []}) is None
    assert latest_concurrency({"error": "unknown lane"}) is None
    assert latest_concurrency([1, 2]) is None


def test_summary_names_counts_and_places() -> None:
    final = replace(EMPTY, produced=3000, event_topics=40, routed=3000, dlq=0, lake_files=9, lake_rows=3000)
    summary = DemoSummary(
        lane="demo-1",
        final=final,
        truth_file="/tmp/truth.json",
        all_events_topic="demo-1.events.all",
        event_topic_example="demo-1.event.<name>",
        dlq_topic="demo-1.events.dlq",
        lake_uri="s3://highway/lake",
        worker_url="http://127.0.0.1:6066",
        worker_log="/tmp/worker.log",
        verify="PASS",
        stack="left running",
        query_table="contest_join",
    )
    text = "\n".join(summary_lines(summary))
    assert "produced      3,000 events into demo-1.events.all" in text
    assert "3,000 events into 40 per-event topics" in text
    assert "3,000 rows in 9 Parquet files under s3://highway/lake/demo-1/" in text
    assert 'highway query --lane demo-1 "select platform, count(*) from contest_join group by 1"' in text
    assert "highway verify --truth /tmp/truth.json" in text


def test_pacing_spreads_events_over_the_duration_despite_the_surge() -> None:
    for events, duration in ((50_000, 60.0), (3000, 5.0)):
        base = base_rate_for(events, duration)
        assert base < events / duration  # the surge adds traffic on top of the base rate
        assert events_sent_within(events, base, duration) == events
        assert events_sent_within(events, base, duration - 2) < events


def test_summary_after_down_says_the_stack_must_come_back() -> None:
    summary = DemoSummary(
        lane="demo-1",
        final=EMPTY,
        truth_file="/tmp/truth.json",
        all_events_topic="demo-1.events.all",
        event_topic_example="demo-1.event.<name>",
        dlq_topic="demo-1.events.dlq",
        lake_uri="s3://highway/lake",
        worker_url="http://127.0.0.1:6066",
        worker_log="/tmp/worker.log",
        verify="not run",
        stack="stopped (--down)",
        stack_running=False,
    )
    text = "\n".join(summary_lines(summary))
    assert "Next (the stack was stopped; `highway dev up` starts it again" in text
    assert f"produced      {NOT_YET}" in text
    assert "highway query" not in text
