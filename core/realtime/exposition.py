"""Prometheus gauges of one worker's realtime state (built at scrape time, no I/O).

Every gauge describes only the partitions this worker owns, so ``sum by (...)`` over all workers
is exact for distinct users: users live in one partition, and partitions have one owner.

* ``highway_concurrent_users{lane,window,state,dimension,value}`` — distinct users. ``window`` is
  the tumbling window (``1m``) or the sliding view (``5m``); ``state="closed"`` is the newest
  window closed on every owned partition (its start in ``highway_window_start_seconds``), taken
  from the published partials; ``state="current"`` is the newest open window. ``dimension="all"``,
  ``value="all"`` is the overall count. Values of each dimension are capped to the top N by
  count plus ``other`` (for ``other`` the gauge is the sum of the folded values' distinct counts).
* ``highway_window_events{lane,state,dimension,value}`` — events in that tumbling window.
* ``highway_window_start_seconds{lane,state}`` — which window the gauges above describe; sum
  across workers only when every worker reports the same start.
* ``highway_active_users{lane}``, ``highway_realtime_partitions{lane}``,
  ``highway_consumer_lag{lane,partition}`` — users seen within the sliding horizon, owned
  partitions, and messages behind the high watermark.

:func:`summarize` computes a lane's numbers once (on the thread that owns the windows);
:class:`RealtimeCollector` only renders those immutable snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.realtime.cardinality import top_n_with_other
from core.realtime.partials import window_label
from core.realtime.windows import NO_TIME, Counts, PartitionWindows

Sums = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # users, sliding users, events


@dataclass(frozen=True)
class LaneSnapshot:
    """What the gauges of one lane show, computed once (by :func:`summarize`) and never changed:
    a scrape renders it without touching the live windows."""

    lane: str
    owned: int
    active_users: int
    lag: Mapping[int, int]
    closed_start: int | None  # None: no owned partition has seen an event
    current_start: int | None
    closed: Sums
    current: Sums


def _sum(counts: Iterable[Counts]) -> dict[str, Any]:
    total: dict[str, Any] = {"all": 0, "by": {}}
    for c in counts:
        total["all"] += c["all"]
        for dim, values in c["by"].items():  # type: ignore[attr-defined]
            target = total["by"].setdefault(dim, {})
            for value, n in values.items():
                target[value] = target.get(value, 0) + n
    return total


def summarize(
    lane: str,
    states: Sequence[PartitionWindows],
    records: Iterable[Mapping[str, Any]],
    lag: Mapping[int, int],
) -> LaneSnapshot:
    """The gauges' numbers for one lane from its owned partitions' windows and the published partials."""
    active = sum(s.active_users() for s in states)
    live = [s for s in states if s.max_ts != NO_TIME]
    if not live:
        empty = (_sum(()), _sum(()), _sum(()))
        return LaneSnapshot(lane, len(states), active, dict(lag), None, None, empty, empty)
    window_ms = live[0].spec.window_ms
    closed_start = min(s.closed_until for s in live) - window_ms
    mine = {s.partition for s in live}
    closed = [r for r in records if r["window_start"] == closed_start and r["partition"] in mine]
    current_start = max(s.spec.start(s.max_ts) for s in live)
    current = [s.window_counts(current_start) for s in live if current_start in s.windows]
    sums = []
    for counts in ([(r["users"], r["users_sliding"], r["events"]) for r in closed], current):
        sums.append((_sum(c[0] for c in counts), _sum(c[1] for c in counts), _sum(c[2] for c in counts)))
    return LaneSnapshot(lane, len(states), active, dict(lag), closed_start, current_start, sums[0], sums[1])


def _emit(family: GaugeMetricFamily, prefix: list[str], counts: Mapping[str, Any], top_n: int) -> None:
    family.add_metric([*prefix, "all", "all"], counts["all"])
    for dim, values in sorted(counts["by"].items()):
        for value, n in sorted(top_n_with_other(values, top_n).items()):
            family.add_metric([*prefix, dim, value], n)


class RealtimeCollector(Collector):
    """Registered once per process; asks ``source`` for the lanes' snapshots at every scrape.

    ``source`` returns immutable :class:`LaneSnapshot` objects (built on the thread that owns the
    windows), so collecting needs no lock on the windows."""

    def __init__(self, source: Any, window_s: int, sliding_s: int, top_n: int) -> None:
        self._source = source  # callable () -> list[LaneSnapshot]
        self._window = window_label(window_s)
        self._sliding = window_label(sliding_s)
        self._top_n = top_n

    def collect(self) -> Iterable[GaugeMetricFamily]:
        users = GaugeMetricFamily(
            "highway_concurrent_users",
            "Distinct users per event-time window on the partitions this worker owns",
            labels=["lane", "window", "state", "dimension", "value"],
        )
        events = GaugeMetricFamily(
            "highway_window_events",
            "Events per tumbling event-time window on the partitions this worker owns",
            labels=["lane", "state", "dimension", "value"],
        )
        starts = GaugeMetricFamily(
            "highway_window_start_seconds",
            "Start of the window the realtime gauges describe",
            labels=["lane", "state"],
        )
        active = GaugeMetricFamily(
            "highway_active_users", "Users seen within the sliding horizon", labels=["lane"]
        )
        owned = GaugeMetricFamily("highway_realtime_partitions", "Partitions owned", labels=["lane"])
        lag = GaugeMetricFamily(
            "highway_consumer_lag", "Messages behind the high watermark", labels=["lane", "partition"]
        )
        for snap in self._source():
            owned.add_metric([snap.lane], snap.owned)
            active.add_metric([snap.lane], snap.active_users)
            for partition, behind in sorted(snap.lag.items()):
                lag.add_metric([snap.lane, str(partition)], behind)
            if snap.closed_start is None or snap.current_start is None:
                continue
            for state, sums in (("closed", snap.closed), ("current", snap.current)):
                _emit(users, [snap.lane, self._window, state], sums[0], self._top_n)
                _emit(users, [snap.lane, self._sliding, state], sums[1], self._top_n)
                _emit(events, [snap.lane, state], sums[2], self._top_n)
            starts.add_metric([snap.lane, "closed"], snap.closed_start / 1000)
            starts.add_metric([snap.lane, "current"], snap.current_start / 1000)
        yield from (users, events, starts, active, owned, lag)
