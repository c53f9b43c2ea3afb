"""Realtime gauges render in the Prometheus text format, and the dashboard asks for real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.realtime.exposition import LaneSnapshot, RealtimeCollector, summarize
from core.realtime.partials import to_record
from core.realtime.windows import ParsedEvent, PartitionWindows, WindowSpec

MIN = 60_000
SPEC = WindowSpec(MIN, 5, 0, ("platform", "event_name"))
ROOT = Path(__file__).resolve().parents[2]


def snapshot() -> LaneSnapshot:
    states, records = [], []
    for partition in range(2):
        state = PartitionWindows(SPEC, partition)
        events = [
            ParsedEvent(
                i, 10 * MIN + i, partition * 100 + i % 7, "ios" if i % 2 else "web", ("x", f"ev{i % 60}")
            )
            for i in range(50)
        ]
        events = [e._replace(values=(e.platform, e.values[1])) for e in events]
        closed = state.apply([*events, ParsedEvent(50, 11 * MIN + 1, 999 + partition, "web", ("web", "ev0"))])
        records += [to_record("default", w, 2, 60, 300) for w in closed]
        states.append(state)
    return summarize("default", states, records, {0: 3, 1: 0})


def test_gauges_parse_and_sum_partitions() -> None:
    registry = CollectorRegistry()
    registry.register(RealtimeCollector(lambda: [snapshot()], 60, 300, top_n=5))
    text = generate_latest(registry).decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    closed = {
        (s.labels["window"], s.labels["dimension"], s.labels["value"]): s.value
        for s in samples
        if s.name == "highway_concurrent_users" and s.labels["state"] == "closed"
    }
    assert closed[("1m", "all", "all")] == 14  # 7 users in each of two partitions
    assert closed[("1m", "platform", "ios")] + closed[("1m", "platform", "web")] >= 14
    names = {k[2] for k in closed if k[1] == "event_name"}
    assert "other" in names
    assert len(names) == 6  # top 5 + other
    starts = {s.labels["state"]: s.value for s in samples if s.name == "highway_window_start_seconds"}
    assert starts == {"closed": 10 * 60, "current": 11 * 60}
    lag = {s.labels["partition"]: s.value for s in samples if s.name == "highway_consumer_lag"}
    assert lag == {"0": 3, "1": 0}
    assert not any(re.search(r"user", str(s.labels)) for s in samples)


def test_dashboard_has_fixed_uid_and_uses_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/highway.json").read_text())
    assert dashboard["uid"] == "highway-overview"
    provisioned = (ROOT / "deploy/grafana/provisioning/datasources/highway.yml").read_text()
    known = {
        "highway_concurrent_users",
        "highway_events_total",
        "highway_late_events_total",
        "highway_router_dlq_total",
        "highway_consumer_lag",
        "highway_active_users",
    }
    for panel in dashboard["panels"]:
        assert f"uid: {panel['datasource']['uid']}" in provisioned
        for target in panel["targets"]:
            for metric in re.findall(r"\b(highway_[a-z_]+)\{", target.get("expr", "")):
                assert metric in known, metric
