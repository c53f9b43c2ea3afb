"""Stage state and lag reach /metrics: what /health says, as numbers an alert can compare."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.health import HealthBoard, StageStates


def samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        s.labels["stage"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_stage_state_follows_the_probes_when_scraped() -> None:
    board = HealthBoard()
    state: dict[str, tuple[str, str | None]] = {"router-default": ("ok", None)}
    board.add("router-default", lambda: state["router-default"])
    board.add("lake", lambda: ("failed", "lake: access denied"))
    registry = CollectorRegistry()
    registry.register(StageStates(board))
    assert samples(registry, "highway_stage_state") == {"router-default": 0, "lake": 2}
    state["router-default"] = ("degraded", "router-default: broker away")
    assert samples(registry, "highway_stage_state")["router-default"] == 1
