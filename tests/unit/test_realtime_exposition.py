"""Realtime gauges render in the Prometheus text format, and the dashboard asks for real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connectors.collector_delivery import DeliveryEdge
from connectors.lake_fs import LakeStore
from core.lake.faults import FaultTracker
from core.realtime.exposition import LaneSnapshot, RealtimeCollector, summarize
from core.realtime.partials import to_record
from core.realtime.windows import ParsedEvent, PartitionWindows, WindowSpec
from streams.collector_http import CollectorMetrics
from streams.health import HealthBoard, StageStates
from streams.lake_metrics import FaultCounts, LakeMetrics, StoreRetries
from streams.realtime_state import RealtimeMetrics
from streams.routing import RouterMetrics

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


def exported_metric_names() -> set[str]:
    """Every ``highway_*`` sample name the stages' own metric objects put on ``/metrics``."""
    registry = CollectorRegistry()
    RouterMetrics(registry)
    LakeMetrics(registry)
    registry.register(FaultCounts(FaultTracker(retry_s=30)))
    registry.register(StoreRetries(cast(LakeStore, SimpleNamespace(retries=0))))
    registry.register(StageStates(HealthBoard()))
    RealtimeMetrics.on(registry)
    registry.register(RealtimeCollector(lambda: [snapshot()], 60, 300, top_n=5))
    CollectorMetrics(registry, cast(DeliveryEdge, SimpleNamespace(in_flight=0)))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
        if family.name.startswith("highway_")
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL string of the dashboard: panel targets and template variable queries."""
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else str(query or ""))
    return queries


def test_dashboard_has_fixed_uid_and_uses_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/highway.json").read_text())
    assert dashboard["uid"] == "highway-overview"
    provisioned = (ROOT / "deploy/grafana/provisioning/datasources/highway.yml").read_text()
    exported = exported_metric_names()
    assert {"highway_router_lag", "highway_lake_lag", "highway_stage_state"} <= exported
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert f"uid: {panel['datasource']['uid']}" in provisioned
    queried = {name for query in dashboard_queries(dashboard) for name in re.findall(r"\bhighway_\w+", query)}
    assert queried, "the dashboard queries no Highway metric"
    assert queried <= exported, f"no code exports {sorted(queried - exported)}"


def test_dashboard_takes_the_window_from_its_variable() -> None:
    """A window length written into a query blanks the panel once ``HIGHWAY_WINDOW_S`` changes."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/highway.json").read_text())
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert "window" in variables
    for query in dashboard_queries(dashboard):
        for value in re.findall(r"\bwindow\s*=~?\s*\"([^\"]*)\"", query):
            assert value == "$window", query


def test_dashboard_has_router_and_lake_rows() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/highway.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["Router", "Lake"]
    text = json.dumps(dashboard)
    for metric in ("highway_router_lag", "highway_lake_commit_seconds_bucket", 'kind=\\"permanent\\"'):
        assert metric in text
