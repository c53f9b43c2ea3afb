"""The realtime stage: exact event-time concurrency, event counts and active-user lookup.

Each lane's ``<lane>.events.common`` (keyed by user id, so a user lives in one partition) is read by
the shared consumer service (:mod:`streams.consumer`) into a
:class:`~core.realtime.windows.PartitionWindows` per owned partition
(:mod:`streams.realtime_state`). When a window closes, its per-partition partial is published to the
compacted ``<lane>.metrics.concurrency`` topic; the HTTP API (:mod:`streams.realtime_api`) sums the
partials of all partitions, so any worker answers for the whole cluster.

Delivery guarantee. Positions come from the checkpoints, never from committed offsets (the stage
commits none): every partial carries its partition's checkpoint (first offset of the oldest window
still held, the watermark state there, how far windows were published). When a partition is
assigned it starts at its newest checkpoint's ``resume_offset`` (from the beginning without one), so
every open window is rebuilt from its first event — after a kill -9 as after a rebalance — unless
this worker still holds the partition's parked state and that state is at least as far. The state is
a pure function of the partition's event sequence, so rebuilt windows equal the lost ones and
re-published partials overwrite equal records: at-least-once publishing with idempotent keys. The
commit path is :func:`core.realtime.publish.publish_in_order` (a partial that fails is fatal before
any later partial of its partition is sent); revocation waits for every sent partial, then parks the
partition's state. Counters (``highway_events_total``, ``highway_late_events_total``) are
at-least-once across crashes.

Between batches (``idle``, after every poll) the handler advances idle partitions' event clocks and
publishes what that closes through the same commit path, drops aged parked state, and builds the
gauge snapshot a scrape asked for (:mod:`streams.realtime_reads`): readers never share a lock with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import faust
import mode
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry

from connectors.heap import release_free_heap
from connectors.kafka_config import confluent_config
from connectors.metrics_topic import ConcurrencyPublisher, ConcurrencyView, ensure_concurrency_topics
from core.errors import TransientError
from core.realtime.ports import PartialPublisher
from core.realtime.publish import Partial, PartialNotPublished, publish_in_order
from core.settings import Settings
from streams.console_catalog import catalog_sources
from streams.consumer import BatchHandler, ConsumerService
from streams.health import health_board
from streams.realtime_api import register_pages
from streams.realtime_state import TP, RealtimeMetrics, RealtimeState, register_gauges
from streams.realtime_upstream import RouterDrained

log = logging.getLogger(__name__)

BATCH_MAX = 5000
BATCH_WITHIN_S = 0.05
IDLE_CHECK_S = 1.0  # how often idle partitions and parked state are looked at
TRIM_EVERY_S = 10.0  # how often freed heap goes back to the OS after batches were applied


def _key(tp: TopicPartition) -> TP:
    return str(tp.topic), int(tp.partition)


class RealtimeHandler(BatchHandler):
    """The stage's side of the consumer service (consumer thread only).

    The consumer uses an eager assignment strategy (librdkafka's default), so ``assigned`` receives
    the full new assignment and parked partitions outside it are evicted.
    """

    def __init__(
        self,
        state: RealtimeState,
        publisher: PartialPublisher,
        upstream_drained: Callable[[], bool] = lambda: True,
    ) -> None:
        self.state = state
        self.publisher = publisher
        self.upstream_drained = upstream_drained
        self.failed = False  # once a partial failed, nothing else may be published or awaited
        self._last_idle_check = 0.0
        self._last_trim = 0.0
        self._applied_since_trim = False

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [_key(tp) for tp in partitions]
        self._count_partitions(consumer, tps)
        checkpoints = self.state.checkpoints(tps) if tps else {}
        starts = self.state.take(tps, checkpoints)
        for tp, key in zip(partitions, tps, strict=True):
            tp.offset = starts[key] if starts[key] > 0 else OFFSET_BEGINNING
        log.info("realtime assigned %s", [(p.topic, p.partition, p.offset) for p in partitions])

    def _count_partitions(self, consumer: Consumer, tps: list[TP]) -> None:
        state = self.state
        for topic in {topic for topic, _ in tps}:
            lane = state.lane_of[topic]
            if lane not in state.partitions:
                metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                state.partitions[lane] = len(metadata.partitions)

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self.failed:
            self.publisher.wait()  # normally a no-op: every batch waits for its partials
        self.state.park(_key(tp) for tp in partitions)

    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        by_tp: dict[TP, list[tuple[int, bytes | None]]] = defaultdict(list)
        for message in messages:
            by_tp[(str(message.topic()), int(message.partition() or 0))].append(
                (int(message.offset() or 0), message.value())
            )
        partials = []
        now_ms = int(time.time() * 1000)
        for key, batch in by_tp.items():
            partials += self.state.apply(key, batch, now_ms)
        self._measure_lag(consumer, list(by_tp))
        self._publish(partials)
        self._applied_since_trim = True

    def _measure_lag(self, consumer: Consumer, tps: list[TP]) -> None:
        # Lag from the consumer's position, not the last offset read: the router writes in
        # transactions, whose commit markers take offsets that are never delivered as messages.
        if not tps:
            return
        for tp in consumer.position([TopicPartition(*key) for key in tps]):
            if tp.offset < 0:
                continue
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            self.state.behind[(tp.topic, tp.partition)] = max(0, (high or 0) - tp.offset)

    def _publish(self, partials: list[Partial]) -> None:
        if partials and not self.failed:
            try:
                publish_in_order(self.publisher, partials)
            except PartialNotPublished:
                self.failed = True
                raise

    def idle(self, consumer: Consumer) -> None:
        """After every poll: close idle partitions' windows, then serve a snapshot a reader asked for."""
        now = time.monotonic()
        if now - self._last_idle_check >= IDLE_CHECK_S:
            self._last_idle_check = now
            # A partition that looked behind at its last batch may have been only a transaction
            # marker behind: measure again before deciding it is idle.
            self._measure_lag(
                consumer, [tp for tp, n in self.state.behind.items() if n and tp in self.state.states]
            )
            self._publish(self.state.idle(now, self.upstream_drained))
            if self._applied_since_trim and now - self._last_trim >= TRIM_EVERY_S:
                # Resident memory follows the live state, not the peak of a backlog.
                release_free_heap()
                self._last_trim, self._applied_since_trim = now, False
        self.state.board.publish_if_wanted(self.state.build_snapshots)

    def stopping(self, consumer: Consumer) -> None:
        if not self.failed:
            self.publisher.wait()


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The stage never commits: its positions are the checkpoints in the concurrency topic."""
    return confluent_config(
        settings,
        **{
            "group.id": f"{settings.app_id}-realtime-loop",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 20,
            "queued.max.messages.kbytes": 16_384,
            "queued.min.messages": 20_000,
        },
    )


class RealtimeService(mode.Service):
    """Creates the concurrency topics and view, then runs the consumer service; stops in reverse.

    The set-up waits for the broker (backing off, health ``degraded``) instead of failing the
    worker's start: a worker started before its broker comes up on its own.
    """

    RETRY_S = (1.0, 30.0)

    def __init__(self, settings: Settings, realtime: RealtimeState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.realtime = realtime
        self.consumer: ConsumerService | None = None
        self._waiting: str | None = None
        self._set_up_failure: str | None = None

    async def on_start(self) -> None:
        self.add_future(self._start_when_reachable())

    async def _start_when_reachable(self) -> None:
        wait = self.RETRY_S[0]
        while not self.should_stop:
            try:
                await self._set_up()
                self._waiting = self._set_up_failure = None
                return
            except TransientError as exc:
                self._waiting, self._set_up_failure = str(exc), None
                log.warning("realtime: waiting for Kafka (%s); retrying in %.0fs", exc, wait)
            except Exception as exc:
                # Not expected to pass by itself: /health says failed (503), and it is still retried.
                self._set_up_failure = repr(exc)
                log.exception("realtime: set-up failed; retrying in %.0fs", wait)
            await self.sleep(wait)
            wait = min(wait * 2, self.RETRY_S[1])

    async def _set_up(self) -> None:
        settings = self.settings
        await asyncio.to_thread(ensure_concurrency_topics, settings)
        if self.realtime.view is None:
            view = ConcurrencyView(settings, keep_ms=settings.realtime_history_hours * 3600 * 1000)
            await asyncio.to_thread(view.start)
            self.realtime.view = view
        handler = RealtimeHandler(self.realtime, ConcurrencyPublisher(settings), RouterDrained(settings))
        self.consumer = ConsumerService(
            "realtime",
            consumer_config(settings),
            list(self.realtime.lane_of),
            handler,
            batch_size=BATCH_MAX,
            batch_wait_s=BATCH_WITHIN_S,
        )
        await self.add_runtime_dependency(self.consumer)

    @property
    def running(self) -> bool:
        """Set up and consuming (what ``/ready`` waits for)."""
        return self.consumer is not None and self.consumer.started

    def health(self) -> tuple[str, str | None]:
        if self.consumer is not None:
            return self.consumer.health()
        if self._set_up_failure is not None:
            return "failed", f"realtime: set-up failed: {self._set_up_failure}"
        if self._waiting is not None:
            return "degraded", f"realtime: waiting for Kafka: {self._waiting}"
        return "degraded", "realtime: starting"

    async def on_stop(self) -> None:
        # The consumer first (it waits for the last partials), then the view it restores from.
        if self.consumer is not None:
            await self.consumer.stop()
        if self.realtime.view is not None:
            await asyncio.to_thread(self.realtime.view.stop)


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Run the realtime stage with the app; its metrics go on ``registry``; serve its HTTP API.

    A direct dependency of the app (like the lake), not an ``@app.service``: the stage does not use
    faust's consumer, so it need not wait for faust's group to settle.
    """
    state = RealtimeState(settings, RealtimeMetrics.on(registry))
    register_gauges(registry, state)
    service = RealtimeService(settings, state, beacon=app.beacon)
    health_board(app).add("realtime", service.health, lambda: service.running)
    app.add_dependency(service)
    register_pages(app, state)
    catalog_sources(app).records = state.records
