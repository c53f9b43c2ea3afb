"""``/health`` of a worker: the worst state of its stages, each with its reason.

Stages register a probe returning ``(state, reason)`` — ``ok``, ``degraded`` (working, impaired:
a broker away, new topics late; it recovers unattended) or ``failed`` (not working; the worker keeps
retrying, and answers 503 so an orchestrator may restart it).

``/ready`` says whether the worker should get traffic: every stage has started and none failed.
A stage passes a ``started`` check (e.g. its mode service's ``started``) when it registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Probe = Callable[[], tuple[str, str | None]]
Started = Callable[[], bool]


_ORDER = {"ok": 0, "degraded": 1, "failed": 2}


class HealthBoard:
    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}
        self._started: dict[str, Started] = {}

    def add(self, name: str, probe: Probe, started: Started | None = None) -> None:
        self._probes[name] = probe
        if started is not None:
            self._started[name] = started

    def report(self) -> tuple[int, dict[str, Any]]:
        """HTTP status (503 when a stage failed) and the JSON body."""
        stages: dict[str, dict[str, str | None]] = {}
        worst = "ok"
        for name, probe in self._probes.items():
            state, reason = probe()
            stages[name] = {"status": state, "reason": reason}
            if _ORDER[state] > _ORDER[worst]:
                worst = state
        reasons = [f"{state['reason']}" for state in stages.values() if state["reason"]]
        body: dict[str, Any] = {"status": worst, "stages": stages}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return (503 if worst == "failed" else 200), body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """200 when every stage has started and none failed, else 503 naming the ones holding it back."""
        starting = sorted(name for name, started in self._started.items() if not started())
        failed = sorted(name for name, probe in self._probes.items() if probe()[0] == "failed")
        ready = not starting and not failed
        body: dict[str, Any] = {"ready": ready}
        if starting:
            body["starting"] = starting
        if failed:
            body["failed"] = failed
        return (200 if ready else 503), body


class StageStates(Collector):
    """``highway_stage_state{stage}``: 0 ok, 1 degraded, 2 failed — the board's probes, read when
    scraped, so alerts see exactly what ``/health`` says (the reason stays on ``/health``)."""

    def __init__(self, board: HealthBoard) -> None:
        self.board = board

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "highway_stage_state",
            "Stage state: 0 ok, 1 degraded, 2 failed (reason on /health)",
            labels=["stage"],
        )
        _, body = self.board.report()
        for name, stage in body["stages"].items():
            family.add_metric([name], _ORDER[stage["status"]])
        yield family


_boards: WeakKeyDictionary[object, HealthBoard] = WeakKeyDictionary()


def health_board(app: object) -> HealthBoard:
    """The app's board (made on first use)."""
    board = _boards.get(app)
    if board is None:
        board = _boards[app] = HealthBoard()
    return board
