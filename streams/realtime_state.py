"""The realtime state of one worker process: owned partitions' windows, parked windows, counters.

Written only by the realtime consumer thread (:mod:`streams.realtime`); read by the HTTP pages and
``/metrics`` under :meth:`RealtimeState.reading`, so a reader never sees a half-applied batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from connectors.metrics_topic import ConcurrencyView
from core.realtime.cardinality import StableLabels
from core.realtime.events import parse
from core.realtime.exposition import LaneSnapshot, RealtimeCollector
from core.realtime.ids import user_key
from core.realtime.partials import latest_checkpoint, partial_key, to_record
from core.realtime.publish import Partial
from core.realtime.windows import Checkpoint, ClosedWindow, ParsedEvent, PartitionWindows, WindowSpec
from core.settings import Settings

log = logging.getLogger(__name__)
TP = tuple[str, int]  # (common topic, partition)


@dataclass(frozen=True)
class RealtimeMetrics:
    """The stage's counters, on the app's registry (at-least-once across crashes: replays recount)."""

    events: Counter
    late: Counter
    bad: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> RealtimeMetrics:
        return cls(
            Counter(
                "highway_events",
                "Events applied by the realtime stage",
                ["lane", "event_name"],
                registry=registry,
            ),
            Counter(
                "highway_late_events",
                "Events later than the allowed lateness (not in any window)",
                ["lane"],
                registry=registry,
            ),
            Counter(
                "highway_realtime_bad_events",
                "Common-topic messages that could not be parsed",
                ["lane"],
                registry=registry,
            ),
        )


def window_spec(settings: Settings) -> WindowSpec:
    return WindowSpec(
        window_ms=settings.realtime_window_s * 1000,
        slide_windows=settings.realtime_sliding_window_s // settings.realtime_window_s,
        lateness_ms=settings.realtime_allowed_lateness_s * 1000,
        dimensions=tuple(settings.realtime_dimensions),
    )


class RealtimeState:
    """All lanes' windows on the partitions this worker owns, and those it gave up (parked).

    ``parked`` is the one map of given-up partitions: a partition that comes back continues from its
    parked windows when they are at least as far as its newest checkpoint (replay is deterministic,
    so any other worker that applied the same offsets meanwhile published equal partials).
    """

    def __init__(self, settings: Settings, metrics: RealtimeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.spec = window_spec(settings)
        self.lane_of = {settings.common_topic(lane): lane for lane in settings.lanes}
        self.states: dict[TP, PartitionWindows] = {}
        self.parked: dict[TP, PartitionWindows] = {}
        self.partitions: dict[str, int] = {}  # input partitions per lane, written into partials
        self.behind: dict[TP, int] = {}  # records not read yet per partition (consumer lag)
        self.view: ConcurrencyView | None = None
        self.labels = {lane: StableLabels(settings.realtime_event_name_top_n) for lane in settings.lanes}
        # Readers (HTTP, /metrics) take this lock while the consumer thread applies batches under it;
        # Python locks are not fair, so the thread yields to a waiting reader between batches.
        self.lock = threading.RLock()
        self.readers_waiting = 0

    # --- ownership (consumer thread) -------------------------------------------------------------
    def take(self, tps: Sequence[TP], checkpoints: Mapping[TP, Checkpoint | None]) -> dict[TP, int]:
        """Own ``tps`` (a full eager assignment): evict other parked state; return start offsets."""
        with self.lock:
            for tp in set(self.parked) - set(tps):
                del self.parked[tp]
            starts = {}
            for tp in tps:
                state = self._resume(tp, checkpoints.get(tp))
                self.states[tp] = state
                starts[tp] = state.next_offset
            return starts

    def _resume(self, tp: TP, checkpoint: Checkpoint | None) -> PartitionWindows:
        parked = self.parked.pop(tp, None)
        if parked is not None and (checkpoint is None or parked.next_offset >= checkpoint.next_offset):
            log.info("realtime %s[%d]: continuing parked state at %d", *tp, parked.next_offset)
            return parked
        log.info("realtime %s[%d]: restoring from checkpoint %s", *tp, checkpoint)
        return PartitionWindows(self.spec, tp[1], checkpoint)

    def park(self, tps: Iterable[TP]) -> None:
        with self.lock:
            for tp in tps:
                state = self.states.pop(tp, None)
                if state is not None:
                    self.parked[tp] = state

    def checkpoints(self, tps: Iterable[TP]) -> dict[TP, Checkpoint | None]:
        """Newest checkpoint per partition (blocking: reads the concurrency topic to its end first)."""
        assert self.view is not None, "the concurrency view starts before the consumer"
        self.view.wait_caught_up()
        out: dict[TP, Checkpoint | None] = {}
        for topic, partition in tps:
            out[(topic, partition)] = latest_checkpoint(self.view.records(self.lane_of[topic]), partition)
        return out

    # --- applying (consumer thread) --------------------------------------------------------------
    def apply(self, tp: TP, messages: Sequence[tuple[int, bytes | None]]) -> list[Partial]:
        """Parse and apply one partition's messages; count; return the partials of closed windows."""
        state = self.states.get(tp)
        if state is None:
            return []  # revoked meanwhile; its new owner reads it
        lane = self.lane_of[tp[0]]
        parsed, bad = parse(messages, self.spec.dimensions)
        if bad:
            self.metrics.bad.labels(lane).inc(bad)
        with self.lock:
            late_before = state.late_events
            closed = state.apply(parsed)
            late = state.late_events - late_before
        if self.readers_waiting:
            time.sleep(0.001)  # let a waiting reader take the lock before the next batch
        if late:
            self.metrics.late.labels(lane).inc(late)
        self._count(lane, parsed)
        return [self._partial(lane, window) for window in closed]

    def _partial(self, lane: str, window: ClosedWindow) -> Partial:
        s = self.settings
        partitions = self.partitions.get(lane, s.topic_partitions)
        record = to_record(lane, window, partitions, s.realtime_window_s, s.realtime_sliding_window_s)
        return Partial(lane, window.partition, partial_key(lane, window.start_ms, window.partition), record)

    def _count(self, lane: str, parsed: Sequence[ParsedEvent]) -> None:
        events = self.metrics.events
        if "event_name" not in self.spec.dimensions:
            events.labels(lane, "all").inc(len(parsed))
            return
        index = self.spec.dimensions.index("event_name")
        counts: dict[str, int] = defaultdict(int)
        labels = self.labels[lane]
        for event in parsed:
            counts[labels.label(event.values[index])] += 1
        for name, n in counts.items():
            events.labels(lane, name).inc(n)

    # --- reading (any thread) --------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the state lock for a reader (HTTP, /metrics), ahead of the next batch."""
        self.readers_waiting += 1
        try:
            with self.lock:
                yield
        finally:
            self.readers_waiting -= 1

    def records(self, lane: str) -> list[dict[str, Any]]:
        """Published partials of ``lane`` (all partitions, whoever owns them)."""
        return self.view.records(lane) if self.view is not None else []

    def snapshots(self) -> list[LaneSnapshot]:
        out = []
        for lane in self.settings.lanes:
            with self.reading():
                owned = {tp: s for tp, s in self.states.items() if self.lane_of[tp[0]] == lane}
                lag = {tp[1]: self.behind.get(tp, 0) for tp in owned}
            out.append(LaneSnapshot(lane, list(owned.values()), self.records(lane), lag))
        return out

    def lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        with self.reading():
            return self._lookup(lane, user_id)

    def _lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        key = user_key(user_id)
        owned = {tp: state for tp, state in self.states.items() if self.lane_of[tp[0]] == lane}
        for (_, partition), state in owned.items():
            seen = state.last_seen(key)
            if seen is not None:
                ts, platform = seen
                horizon = state.max_ts - self.settings.realtime_sliding_window_s * 1000
                return {
                    "user_id": user_id,
                    "lane": lane,
                    "owned_here": True,
                    "partition": partition,
                    "active": ts >= horizon,
                    "last_seen_ms": ts,
                    "platform": platform,
                }
        return {
            "user_id": user_id,
            "lane": lane,
            "owned_here": False,
            "active": None,
            "partitions_owned_here": sorted(partition for _, partition in owned),
            "detail": "not seen within the sliding window on the partitions this worker owns; "
            "ask the worker that owns the user's partition",
        }


class LockedCollector(Collector):
    """Collects while holding the state lock, so a scrape sees no half-applied batch."""

    def __init__(self, inner: Collector, state: RealtimeState) -> None:
        self._inner = inner
        self._state = state

    def collect(self) -> Iterable[Metric]:
        with self._state.reading():
            return list(self._inner.collect())


def register_gauges(registry: CollectorRegistry, state: RealtimeState) -> None:
    settings = state.settings
    gauges = RealtimeCollector(
        state.snapshots,
        settings.realtime_window_s,
        settings.realtime_sliding_window_s,
        settings.realtime_event_name_top_n,
    )
    registry.register(LockedCollector(gauges, state))
