"""The realtime state of one worker process: owned partitions' windows, parked windows, counters.

Written only by the realtime consumer thread (:mod:`streams.realtime`), which never shares a lock
with readers: ``/metrics`` renders immutable snapshots the thread builds between batches
(:mod:`streams.realtime_reads`), so a scrape never sees a half-applied batch and never waits for one;
a user lookup reads the owned partitions through a tuple replaced on every assignment change, and
one user's entry in a partition's user table (arrays a rebuild replaces with one assignment:
:mod:`core.realtime.users`).

Bounds (docs/realtime.md): dimension values are cut to ``realtime_max_dimension_chars`` and capped
per window (:mod:`core.realtime.windows`), both counted in ``highway_realtime_folded_total``; events
too far in the future are counted, not applied; an idle partition's event clock follows the wall
clock (:meth:`RealtimeState.idle`); parked state is dropped after ``realtime_parked_max_age_s``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from connectors.metrics_topic import ConcurrencyView
from core.realtime.cardinality import StableLabels
from core.realtime.events import parse
from core.realtime.exposition import LaneSnapshot, RealtimeCollector, summarize
from core.realtime.ids import user_key
from core.realtime.partials import latest_checkpoint, partial_key, to_record
from core.realtime.publish import Partial
from core.realtime.windows import NO_TIME, Checkpoint, ClosedWindow, ParsedEvent, PartitionWindows, WindowSpec
from core.settings import Settings
from streams.realtime_reads import SnapshotBoard

log = logging.getLogger(__name__)
TP = tuple[str, int]  # (common topic, partition)


@dataclass(frozen=True)
class RealtimeMetrics:
    """The stage's counters, on the app's registry (at-least-once across crashes: replays recount)."""

    events: Counter
    late: Counter
    bad: Counter
    folded: Counter
    future: Counter

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
            Counter(
                "highway_realtime_folded",
                "Dimension values changed at ingest: cut to the length limit (reason=length) or "
                "folded into 'other' beyond the per-window cap (reason=cap)",
                ["lane", "dimension", "reason"],
                registry=registry,
            ),
            Counter(
                "highway_realtime_future_events",
                "Events too far ahead of the wall clock (not applied, watermark unchanged)",
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
        value_cap=settings.realtime_dimension_top_n,
        future_ms=settings.realtime_future_tolerance_s * 1000,
    )


class RealtimeState:
    """All lanes' windows on the partitions this worker owns, and those it gave up (parked).

    ``parked`` is the one map of given-up partitions: a partition that comes back continues from its
    parked windows when they are at least as far as its newest checkpoint (replay is deterministic,
    so any other worker that applied the same offsets meanwhile published equal partials). Parked
    state is dropped when a new assignment leaves it out, and after ``realtime_parked_max_age_s``.
    """

    def __init__(self, settings: Settings, metrics: RealtimeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.spec = window_spec(settings)
        self.lane_of = {settings.common_topic(lane): lane for lane in settings.lanes}
        self.states: dict[TP, PartitionWindows] = {}
        self.owned: tuple[tuple[TP, PartitionWindows], ...] = ()  # what readers iterate
        self.parked: dict[TP, PartitionWindows] = {}
        self.parked_at: dict[TP, float] = {}  # monotonic time of parking
        self.last_record: dict[TP, tuple[float, int]] = {}  # (monotonic time, event clock) then
        self.partitions: dict[str, int] = {}  # input partitions per lane, written into partials
        self.behind: dict[TP, int] = {}  # records not read yet per partition (consumer lag)
        self.view: ConcurrencyView | None = None
        self.labels = {lane: StableLabels(settings.realtime_dimension_top_n) for lane in settings.lanes}
        self.board = SnapshotBoard()

    # --- ownership (consumer thread) -------------------------------------------------------------
    def take(self, tps: Sequence[TP], checkpoints: Mapping[TP, Checkpoint | None]) -> dict[TP, int]:
        """Own ``tps`` (a full eager assignment): evict other parked state; return start offsets."""
        for tp in set(self.parked) - set(tps):
            self._unpark(tp)
        starts = {}
        now = time.monotonic()
        for tp in tps:
            state = self._resume(tp, checkpoints.get(tp))
            self.states[tp] = state
            self.last_record[tp] = (now, state.max_ts)
            starts[tp] = state.next_offset
        self.owned = tuple(self.states.items())
        return starts

    def _resume(self, tp: TP, checkpoint: Checkpoint | None) -> PartitionWindows:
        parked = self._unpark(tp)
        if parked is not None and (checkpoint is None or parked.next_offset >= checkpoint.next_offset):
            log.info("realtime %s[%d]: continuing parked state at %d", *tp, parked.next_offset)
            return parked
        log.info("realtime %s[%d]: restoring from checkpoint %s", *tp, checkpoint)
        return PartitionWindows(self.spec, tp[1], checkpoint)

    def _unpark(self, tp: TP) -> PartitionWindows | None:
        self.parked_at.pop(tp, None)
        return self.parked.pop(tp, None)

    def park(self, tps: Iterable[TP]) -> None:
        now = time.monotonic()
        for tp in tps:
            state = self.states.pop(tp, None)
            self.last_record.pop(tp, None)
            if state is not None:
                self.parked[tp] = state
                self.parked_at[tp] = now
        self.owned = tuple(self.states.items())

    def checkpoints(self, tps: Iterable[TP]) -> dict[TP, Checkpoint | None]:
        """Newest checkpoint per partition (blocking: reads the concurrency topic to its end first)."""
        assert self.view is not None, "the concurrency view starts before the consumer"
        self.view.wait_caught_up()
        out: dict[TP, Checkpoint | None] = {}
        for topic, partition in tps:
            out[(topic, partition)] = latest_checkpoint(self.view.records(self.lane_of[topic]), partition)
        return out

    # --- applying (consumer thread) --------------------------------------------------------------
    def apply(
        self, tp: TP, messages: Sequence[tuple[int, bytes | None]], now_ms: int | None = None
    ) -> list[Partial]:
        """Parse and apply one partition's messages; count; return the partials of closed windows."""
        state = self.states.get(tp)
        if state is None:
            return []  # revoked meanwhile; its new owner reads it
        lane = self.lane_of[tp[0]]
        truncated: Tally[str] = Tally()
        max_chars = self.settings.realtime_max_dimension_chars
        parsed, bad = parse(messages, self.spec.dimensions, max_chars, truncated)
        if bad:
            self.metrics.bad.labels(lane).inc(bad)
        before = (state.late_events, state.future_events, Tally(state.folded))
        closed = state.apply(parsed, int(time.time() * 1000) if now_ms is None else now_ms)
        self.last_record[tp] = (time.monotonic(), state.max_ts)
        self._count_bounds(lane, state, before, truncated)
        self._count(lane, parsed)
        return [self._partial(lane, window) for window in closed]

    def _count_bounds(
        self, lane: str, state: PartitionWindows, before: tuple[int, int, Tally[str]], truncated: Tally[str]
    ) -> None:
        late, future, folded = before
        if state.late_events > late:
            self.metrics.late.labels(lane).inc(state.late_events - late)
        if state.future_events > future:
            self.metrics.future.labels(lane).inc(state.future_events - future)
        for dim, n in truncated.items():
            self.metrics.folded.labels(lane, dim, "length").inc(n)
        for dim, n in (state.folded - folded).items():
            self.metrics.folded.labels(lane, dim, "cap").inc(n)

    def idle(
        self, now_mono: float | None = None, upstream_drained: Callable[[], bool] = lambda: True
    ) -> list[Partial]:
        """Between batches: advance idle partitions' event clocks, drop old parked state.

        A partition idle for ``realtime_idle_timeout_s`` (no records, nothing behind) runs its event
        clock on from its last event time with the wall clock, less the timeout, so its windows close
        — but only when ``upstream_drained`` (asked once, when some partition is idle) says nothing
        is on its way: while the router is down or restarting, or the broker away, a quiet partition
        is not an idle one, and closing its windows would count their events as late.
        """
        now = time.monotonic() if now_mono is None else now_mono
        max_age = self.settings.realtime_parked_max_age_s
        for tp in [tp for tp, at in self.parked_at.items() if now - at > max_age]:
            log.info("realtime %s[%d]: dropping state parked for more than %d s", *tp, max_age)
            self._unpark(tp)
        timeout = self.settings.realtime_idle_timeout_s
        partials: list[Partial] = []
        if not timeout:
            return partials
        drained: bool | None = None
        for tp, state in self.states.items():
            since, event_clock = self.last_record.get(tp, (now, NO_TIME))
            if event_clock == NO_TIME or now - since < timeout or self.behind.get(tp, 0) > 0:
                continue
            if drained is None:
                drained = upstream_drained()
            if not drained:
                return partials
            closed = state.advance(event_clock + int((now - since - timeout) * 1000))
            partials += [self._partial(self.lane_of[tp[0]], window) for window in closed]
        return partials

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

    # --- reading ---------------------------------------------------------------------------------
    def records(self, lane: str) -> list[dict[str, Any]]:
        """Published partials of ``lane`` (all partitions, whoever owns them)."""
        return self.view.records(lane) if self.view is not None else []

    def build_snapshots(self) -> list[LaneSnapshot]:
        """The gauges' numbers of every lane (consumer thread, between batches)."""
        out = []
        for lane in self.settings.lanes:
            owned = {tp: s for tp, s in self.states.items() if self.lane_of[tp[0]] == lane}
            lag = {tp[1]: self.behind.get(tp, 0) for tp in owned}
            out.append(summarize(lane, list(owned.values()), self.records(lane), lag))
        return out

    def snapshots(self) -> Sequence[LaneSnapshot]:
        """For a scrape (any thread): never waits for a batch longer than the board allows."""
        return self.board.read()

    def lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        return self._lookup(lane, user_id)

    def _lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        key = user_key(user_id)
        owned = {tp: state for tp, state in self.owned if self.lane_of[tp[0]] == lane}
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


def register_gauges(registry: CollectorRegistry, state: RealtimeState) -> None:
    settings = state.settings
    gauges = RealtimeCollector(
        state.snapshots,
        settings.realtime_window_s,
        settings.realtime_sliding_window_s,
        settings.realtime_dimension_top_n,
    )
    registry.register(gauges)
