"""`highway bench collect`'s verdicts and report, from recorded figures (no broker)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from bench.collect import bound, notes, render
from bench.collect_load import build_bodies


def run(events: int, seconds: float, collector_cpu: float | None, generator_cpu: float) -> dict[str, Any]:
    return {
        "events": events,
        "seconds": seconds,
        "latencies": [0.01, 0.02, 0.03],
        "due_latencies": [0.011, 0.021, 0.04],
        "statuses": {200: events // 50},
        "collector_cpu_s": collector_cpu,
        "generator_cpu_s": generator_cpu,
    }


def test_the_bound_names_the_saturated_process() -> None:
    assert bound(run(1000, 1.0, 0.95, 0.3)).startswith("collector CPU")
    assert bound(run(1000, 1.0, 0.4, 0.9)).startswith("load generator CPU")
    assert bound(run(1000, 1.0, None, 0.2)).startswith("neither process saturated")
    assert bound({**run(1000, 1.0, 0.5, 0.2), "machine_share": 0.97}).startswith("machine CPU")


def test_report_shows_producer_collector_and_latency_rows() -> None:
    result = {
        "batch": 50,
        "runs": {"producer": [100_000.0, 120_000.0], "collector": [run(50_000, 2.0, 1.9, 0.5)]},
        "rates": [25_000.0],
        "latency": {"half of the 20,000/s goal": run(10_000, 1.0, 0.3, 0.1)},
    }
    console = Console(width=200, record=True)
    console.print(render(result))
    text = console.export_text()
    assert "110,000 (100,000-120,000)" in text
    assert "25,000" in text
    assert "40.0 ms" in text  # p99 from the due time
    assert any("collector CPU" in line for line in notes(result))


def test_bodies_are_json_arrays_of_distinct_events() -> None:
    bodies = build_bodies(50, count=3)
    assert len(bodies) == 3
    assert bodies[0].startswith(b"[")
    assert bodies[0].count(b'"event_id"') == 50
    assert bodies[0] != bodies[1]
