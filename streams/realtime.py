"""The realtime family: exact event-time concurrency, event counts and active-user lookup.

Each lane's ``<lane>.events.common`` (keyed by user id, so a user lives in one partition) is read in
batches into a :class:`~core.realtime.windows.PartitionWindows` per owned partition. When a
window closes its per-partition partial is published to the compacted ``<lane>.metrics.concurrency``
topic; the HTTP API sums the partials of all partitions, so any worker answers for the whole cluster.

Two engines feed the same :class:`Realtime` state (``settings.realtime_consumer``):

* ``confluent`` (default, ``streams.realtime_loop``): one confluent-kafka consumer thread that
  starts every assigned partition at its newest checkpoint's ``resume_offset``;
* ``faust``: an agent per lane. Input is at-least-once (faust acks a batch after it is applied;
  offsets below a partition's position are skipped). When a partition's first message arrives at
  offset ``O`` (faust's committed offset), the worker restores the newest checkpoint and re-reads
  ``[resume_offset, O)`` with a plain consumer before going on.

Every partial carries a checkpoint (first offset of the oldest window still held, the watermark
state there, and how far windows were published). The state is a pure function of the partition's
event sequence, so rebuilt windows equal the lost ones and re-published partials overwrite equal
records. Counters (``highway_events_total``, ``highway_late_events_total``) are at-least-once
across crashes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import faust
import mode
import orjson
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from connectors.metrics_topic import (
    ConcurrencyPublisher,
    ConcurrencyView,
    ensure_concurrency_topics,
    read_offsets,
)
from core.errors import TerminalError
from core.realtime.cardinality import StableLabels
from core.realtime.exposition import LaneSnapshot, RealtimeCollector
from core.realtime.ids import user_key
from core.realtime.partials import (
    Measure,
    flatten,
    latest_checkpoint,
    merge,
    partial_key,
    to_record,
    window_label,
)
from core.realtime.windows import ClosedWindow, ParsedEvent, PartitionWindows, WindowSpec
from core.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX = 5000
BATCH_WITHIN_S = 0.05

EVENTS = Counter("highway_events", "Events applied by the realtime stage", ["lane", "event_name"])
LATE = Counter("highway_late_events", "Events later than the allowed lateness (not in any window)", ["lane"])
BAD = Counter("highway_realtime_bad_events", "Common-topic messages that could not be parsed", ["lane"])


def parse(
    messages: Iterable[tuple[int, bytes | None]], dimensions: Sequence[str]
) -> tuple[list[ParsedEvent], int]:
    """(offset, JSON value) → events; returns the events and how many could not be parsed."""
    parsed: list[ParsedEvent] = []
    bad = 0
    for offset, value in messages:
        try:
            doc = orjson.loads(value or b"")
            user = str(doc["user_id"])
            platform = str(doc.get("platform") or "unknown")
            values = tuple(str(doc.get(dim) or "unknown") for dim in dimensions)
            parsed.append(ParsedEvent(offset, int(doc["server_ts"]), user_key(user), platform, values))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
    return parsed, bad


class Realtime:
    """The realtime state of one worker process (all lanes, owned partitions only)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.spec = WindowSpec(
            window_ms=settings.realtime_window_s * 1000,
            slide_windows=settings.realtime_sliding_window_s // settings.realtime_window_s,
            lateness_ms=settings.realtime_allowed_lateness_s * 1000,
            dimensions=tuple(settings.realtime_dimensions),
        )
        self.lane_of = {settings.common_topic(lane): lane for lane in settings.lanes}
        self.states: dict[TP, PartitionWindows] = {}
        self.parked: dict[TP, PartitionWindows] = {}
        self.labels = {lane: StableLabels(settings.realtime_event_name_top_n) for lane in settings.lanes}
        self.publisher: ConcurrencyPublisher | None = None
        self.view: ConcurrencyView | None = None
        self.ready = asyncio.Event()
        self.partitions: dict[str, int] = {}
        self.high: dict[TP, int] = {}
        # The HTTP handlers and /metrics read the state while an engine applies batches to it;
        # Python locks are not fair, so an engine with a backlog yields to waiting readers.
        self.lock = threading.RLock()
        self.readers_waiting = 0

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.settings
        await asyncio.to_thread(ensure_concurrency_topics, settings)
        self.publisher = ConcurrencyPublisher(settings)
        self.view = ConcurrencyView(settings, keep_ms=settings.realtime_history_hours * 3600 * 1000)
        await asyncio.to_thread(self.view.start)
        self.ready.set()

    async def stop(self) -> None:
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher.flush)
        if self.view is not None:
            await asyncio.to_thread(self.view.stop)

    async def on_revoked(self, revoked: Iterable[TP]) -> None:
        for tp in revoked:
            state = self.states.pop(tp, None)
            if state is not None:
                self.parked[tp] = state
        if self.publisher is not None:
            await asyncio.to_thread(self.publisher.flush)

    def on_assigned(self, assigned: Iterable[TP]) -> None:
        for tp in set(self.parked) - set(assigned):
            del self.parked[tp]

    # --- processing -----------------------------------------------------------------------------
    async def process(self, events: Sequence[EventT]) -> None:
        by_tp: dict[TP, list[tuple[int, bytes | None]]] = defaultdict(list)
        for event in events:
            by_tp[event.message.tp].append((event.message.offset, event.message.value))
        assignment = self.app.consumer.assignment()
        for tp, messages in by_tp.items():
            if tp not in assignment:
                continue  # in flight when the partition was revoked; its new owner handles it
            lane = self.lane_of[tp.topic]
            state = await self._state(tp, lane, messages[0][0])
            self.high[tp] = self.app.consumer.highwater(tp) or 0
            self.apply(lane, state, messages)

    def apply(self, lane: str, state: PartitionWindows, messages: Sequence[tuple[int, bytes | None]]) -> None:
        """Parse and apply one partition's messages, publish what closed, count (any engine)."""
        parsed, bad = parse(messages, self.spec.dimensions)
        if bad:
            BAD.labels(lane).inc(bad)
        with self.lock:
            late_before = state.late_events
            closed = state.apply(parsed)
            late = state.late_events - late_before
        if self.readers_waiting:
            time.sleep(0.001)  # let a waiting reader take the lock before the next batch
        self._publish(lane, closed)
        if late:
            LATE.labels(lane).inc(late)
        self._count(lane, parsed)

    def restore(self, tp: TP, lane: str) -> PartitionWindows:
        """A partition's state at its newest checkpoint (blocking; reads the concurrency topic)."""
        assert self.view is not None
        self.view.wait_caught_up()
        checkpoint = latest_checkpoint(self.view.records(lane), tp.partition)
        log.info("realtime %s[%d]: restoring from checkpoint %s", tp.topic, tp.partition, checkpoint)
        return PartitionWindows(self.spec, tp.partition, checkpoint)

    def _count(self, lane: str, parsed: Sequence[ParsedEvent]) -> None:
        if "event_name" not in self.spec.dimensions:
            EVENTS.labels(lane, "all").inc(len(parsed))
            return
        index = self.spec.dimensions.index("event_name")
        counts: dict[str, int] = defaultdict(int)
        labels = self.labels[lane]
        for event in parsed:
            counts[labels.label(event.values[index])] += 1
        for name, n in counts.items():
            EVENTS.labels(lane, name).inc(n)

    def _publish(self, lane: str, closed: Sequence[ClosedWindow]) -> None:
        if not closed or self.publisher is None:
            return
        partitions = self.partitions.get(lane, self.settings.topic_partitions)
        s = self.settings
        self.publisher.publish(
            lane,
            [
                (
                    partial_key(lane, w.start_ms, w.partition),
                    to_record(lane, w, partitions, s.realtime_window_s, s.realtime_sliding_window_s),
                )
                for w in closed
            ],
        )

    async def _state(self, tp: TP, lane: str, first_offset: int) -> PartitionWindows:
        state = self.states.get(tp)
        if state is not None:
            return state
        parked = self.parked.pop(tp, None)
        if parked is not None and first_offset <= parked.next_offset:
            self.states[tp] = parked
            return parked
        await self.ready.wait()
        count = self.app.consumer.topic_partitions(tp.topic) or 0
        self.partitions[lane] = max(self.partitions.get(lane, 0), count)
        state = await asyncio.to_thread(self._restore, tp, lane, first_offset)
        self.states[tp] = state
        return state

    def _restore(self, tp: TP, lane: str, first_offset: int) -> PartitionWindows:
        """Rebuild a partition's windows: latest checkpoint, then re-read up to ``first_offset``."""
        started = time.monotonic()
        state = self.restore(tp, lane)
        start = state.next_offset
        replayed = 0
        for batch in read_offsets(self.settings, tp.topic, tp.partition, start, first_offset):
            parsed, _ = parse(((m.offset() or 0, m.value()) for m in batch), self.spec.dimensions)
            replayed += len(batch)
            self._publish(lane, state.apply(parsed))
        log.info(
            "realtime %s[%d]: re-read %d messages from %d to %d in %.2fs",
            tp.topic,
            tp.partition,
            replayed,
            start,
            first_offset,
            time.monotonic() - started,
        )
        return state

    # --- reading ---------------------------------------------------------------------------------
    def snapshots(self) -> list[LaneSnapshot]:
        out = []
        for lane in self.settings.lanes:
            with self.reading():
                owned = {tp: s for tp, s in self.states.items() if self.lane_of[tp.topic] == lane}
                lag = {tp.partition: max(0, self.high.get(tp, 0) - s.next_offset) for tp, s in owned.items()}
            records = self.view.records(lane) if self.view is not None else []
            out.append(LaneSnapshot(lane, list(owned.values()), records, lag))
        return out

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the state lock for a reader (HTTP, /metrics), ahead of the next batch."""
        self.readers_waiting += 1
        try:
            with self.lock:
                yield
        finally:
            self.readers_waiting -= 1

    def lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        with self.reading():
            return self._lookup(lane, user_id)

    def _lookup(self, lane: str, user_id: str) -> dict[str, Any]:
        key = user_key(user_id)
        owned = sorted(tp.partition for tp in self.states if self.lane_of[tp.topic] == lane)
        for tp, state in self.states.items():
            if self.lane_of[tp.topic] != lane:
                continue
            seen = state.last_seen(key)
            if seen is not None:
                ts, platform = seen
                horizon = state.max_ts - self.settings.realtime_sliding_window_s * 1000
                return {
                    "user_id": user_id,
                    "lane": lane,
                    "owned_here": True,
                    "partition": tp.partition,
                    "active": ts >= horizon,
                    "last_seen_ms": ts,
                    "platform": platform,
                }
        return {
            "user_id": user_id,
            "lane": lane,
            "owned_here": False,
            "active": None,
            "partitions_owned_here": owned,
            "detail": "not seen within the sliding window on the partitions this worker owns; "
            "ask the worker that owns the user's partition",
        }


def _time_ms(value: str | None, default: int) -> int:
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    return int(number if number > 1e11 else number * 1000)


def query(rt: Realtime, params: Mapping[str, str], measure_for: Mapping[str, Measure]) -> dict[str, Any]:
    """Answer ``/api/v1/concurrency`` and ``/api/v1/counts`` from the published partials."""
    settings = rt.settings
    lane = params.get("lane") or settings.lanes[0]
    window = params.get("window") or window_label(settings.realtime_window_s)
    if lane not in settings.lanes or window not in measure_for:
        raise ValueError(f"unknown lane {lane!r} or window {window!r}; windows: {sorted(measure_for)}")
    by = params.get("by") or None
    now = int(time.time() * 1000)
    to_ms = _time_ms(params.get("to"), now + 1)
    from_ms = _time_ms(params.get("from"), to_ms - settings.realtime_history_hours * 3600 * 1000)
    records = rt.view.records(lane) if rt.view is not None else []
    rows = merge(records, measure_for[window], from_ms, to_ms)
    return {"lane": lane, "window": window, "by": by, "windows": rows, "rows": flatten(rows, by)}


class LockedCollector(Collector):
    """Collects while holding the engine's lock, so a scrape sees no half-applied batch."""

    def __init__(self, inner: Collector, rt: Realtime) -> None:
        self._inner = inner
        self._rt = rt

    def collect(self) -> Iterable[Metric]:
        with self._rt.reading():
            return list(self._inner.collect())


def _register_agents(app: faust.App, rt: Realtime) -> None:
    """Engine ``faust``: an agent per lane (input acked per batch, see the module docstring)."""
    for lane in rt.settings.lanes:
        topic = app.topic(rt.settings.common_topic(lane), key_serializer="raw", value_serializer="raw")

        async def consume(stream: StreamT[Any]) -> None:
            assert isinstance(stream, faust.Stream)
            async for events in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
                await rt.process(events)

        app.agent(topic, name=f"core.realtime.{lane}")(consume)

    @app.task
    async def start_realtime() -> None:
        await rt.start()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's stub rejects async receivers
    async def revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await rt.on_revoked(args[0] if args else kwargs.get("revoked", ()))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        rt.on_assigned(args[0] if args else kwargs.get("assigned", ()))


def _register_loop(app: faust.App, rt: Realtime) -> None:
    """Engine ``confluent``: one consumer thread (``streams.realtime_loop``) run by a faust service."""
    from streams.realtime_loop import RealtimeLoop

    loop = RealtimeLoop(rt)

    @app.service
    class RealtimeService(mode.Service):
        async def on_start(self) -> None:
            await rt.start()
            loop.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(loop.stop)
            await rt.stop()

        @mode.Service.task
        async def _watch(self) -> None:
            while not self.should_stop:
                if loop.error is not None:
                    raise TerminalError(f"realtime loop failed: {loop.error}") from loop.error
                await self.sleep(0.5)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Declare the realtime agents, lifecycle hooks and HTTP pages on ``app``."""
    rt = Realtime(app, settings)
    gauges = RealtimeCollector(
        rt.snapshots,
        settings.realtime_window_s,
        settings.realtime_sliding_window_s,
        settings.realtime_event_name_top_n,
    )
    registry.register(LockedCollector(gauges, rt))
    users_measures: dict[str, Measure] = {
        window_label(settings.realtime_window_s): "users",
        window_label(settings.realtime_sliding_window_s): "users_sliding",
    }
    count_measures: dict[str, Measure] = {window_label(settings.realtime_window_s): "events"}

    if settings.realtime_consumer == "faust":
        _register_agents(app, rt)
    else:
        _register_loop(app, rt)

    @app.page("/api/v1/concurrency")
    async def concurrency(web: View, request: Request) -> Response:
        try:
            return web.json(query(rt, request.query, users_measures))
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)

    @app.page("/api/v1/counts")
    async def counts(web: View, request: Request) -> Response:
        try:
            return web.json(query(rt, request.query, count_measures))
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)

    @app.page("/api/v1/users/{user_id}")
    async def user(web: View, request: Request, user_id: str) -> Response:
        lane = request.query.get("lane") or settings.lanes[0]
        if lane not in settings.lanes:
            return web.json({"error": f"unknown lane {lane!r}"}, status=400)
        return web.json(rt.lookup(lane, user_id))
