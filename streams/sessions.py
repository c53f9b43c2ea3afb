"""The sessions stage: each lane's common topic → its ``sessions`` table in the lake, exactly once.

Runs on the shared consumer service (``streams.consumer``) in its own consumer group
(``<app_id>.sessions``), subscribed to every lane's common topic (key = user_id, so a user's events
are in one partition, in order). The logic is pure and lives in ``core.sessions``: one
:class:`~core.sessions.sessionizer.PartitionSessionizer` per partition, committed through
:class:`~core.sessions.commit.SessionCommitter` to the Iceberg table
(``connectors.sessions_lake``). :class:`SessionsHandler`:

* ``assigned``: the partition's checkpoint is read from the table's head; reading starts at its
  ``replay_offset`` (the oldest session still open at the last commit), not at the group's offset;
* ``batch``: events are parsed (event time: ``core.sessions.parse``) and fed; one that cannot be
  placed (no user_id, no timestamp) is counted and logged with the field, never guessed;
* ``idle``: a partition quiet for ``sessions_idle_timeout_s`` moves its event clock on with the wall
  clock — only once the router has drained (``streams.realtime_upstream.RouterDrained``, as the
  realtime stage) — so the last sessions close when traffic stops; closed sessions are committed
  every ``sessions_flush_age_s``, then the group's offsets are set to the replay offsets (for lag);
* ``revoked``: a last commit of what is closed; ``lost``: dropped (the next owner replays).

A failed commit keeps the closed sessions and is retried after a backoff (health degraded);
consumption pauses meanwhile, so nothing piles up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.kafka_config import confluent_config
from connectors.kafka_logging import RepeatThrottle
from connectors.sessions_lake import IcebergSessionTables
from connectors.wire import codec_for
from core.lake.records import EventDecoder
from core.sessions.commit import TP, SessionCommitter
from core.sessions.model import NO_TIME, SessionEvent, SessionSpec
from core.sessions.parse import Unusable, session_event
from core.settings import Settings
from streams.consumer import BatchHandler, ConsumerOffsets, ConsumerService
from streams.health import health_board
from streams.realtime_upstream import RouterDrained
from streams.sessions_api import register_stats

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
ADVANCE_EVERY_S = 1.0


class SessionsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.closed = Counter(
            "highway_sessions_closed", "Sessions committed to the lake", ["lane"], registry=registry
        )
        self.late = Counter("highway_sessions_late_events", "Events behind the watermark", registry=registry)
        self.unusable = Counter(
            "highway_sessions_unusable_events",
            "Events without a user or a time",
            ["field"],
            registry=registry,
        )
        self.open = Gauge("highway_sessions_open", "Sessions still open", registry=registry)
        self.errors = Counter("highway_sessions_errors", "Failed commits", registry=registry)
        self.commit_seconds = Histogram("highway_sessions_commit_seconds", "Commit time", registry=registry)


class SessionsHandler(BatchHandler):
    """The sessions stage's side of the consumer service (module docstring); all on its thread."""

    def __init__(
        self,
        settings: Settings,
        committer: SessionCommitter,
        decode: EventDecoder,
        metrics: SessionsMetrics,
        upstream_drained: Callable[[], bool],
        should_stop: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.committer = committer
        self.decode = decode
        self.metrics = metrics
        self.upstream_drained = upstream_drained
        self.should_stop = should_stop
        # Per partition: monotonic time of its last record, and its event clock then.
        self.last_record: dict[TP, tuple[float, int]] = {}
        self.checked_at = 0.0
        self.behind: dict[TP, int] = {}  # records not read yet (consumer lag): not quiet, catching up
        self.next_flush_at = 0.0
        self.error: str | None = None
        self.backoff_s = 0.0
        self.unusable = 0
        self._throttle = RepeatThrottle()

    def degraded(self) -> str | None:
        return self.error

    # --- partitions ------------------------------------------------------------------------------
    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        starts = self.committer.recover([(tp.topic, tp.partition) for tp in partitions])
        now = time.monotonic()
        for tp in partitions:
            start = starts.get((tp.topic, tp.partition))
            tp.offset = OFFSET_BEGINNING if start is None else start
            self.last_record[(tp.topic, tp.partition)] = (now, NO_TIME)

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        leaving = [(tp.topic, tp.partition) for tp in partitions]
        try:
            self._flush(consumer, leaving)
        except Exception:
            log.exception(
                "sessions: last commit of %d revoked partitions failed; the owner replays", len(leaving)
            )
        self._drop(leaving)

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop([(tp.topic, tp.partition) for tp in partitions])

    def _drop(self, partitions: list[TP]) -> None:
        self.committer.release(partitions)
        for tp in partitions:
            self.last_record.pop(tp, None)
            self.behind.pop(tp, None)

    # --- records ---------------------------------------------------------------------------------
    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        by_tp: dict[TP, list[SessionEvent]] = {}
        skew_ms = self.settings.sessions_clock_skew_s * 1000
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None
            assert partition is not None
            assert offset is not None
            try:
                event = session_event(offset, self.decode(message.value() or b""), skew_ms)
            except Exception as exc:
                self._unusable(topic, partition, offset, exc)
                continue
            by_tp.setdefault((topic, partition), []).append(event)
        now = time.monotonic()
        for tp, events in by_tp.items():
            sessionizer = self.committer.sessionizers.get(tp)
            if sessionizer is None:
                continue  # no longer ours: the owner reads it
            late = sessionizer.late
            sessionizer.feed(events)
            self.metrics.late.inc(sessionizer.late - late)
            self.last_record[tp] = (now, sessionizer.max_ts)
        self._measure_lag(consumer, list(by_tp))

    def _measure_lag(self, consumer: Consumer, tps: list[TP]) -> None:
        # From the consumer's position, not the last offset read: the router writes in
        # transactions, whose commit markers take offsets never delivered as messages.
        if not tps:
            return
        for tp in consumer.position([TopicPartition(*key) for key in tps]):
            if tp.offset >= 0:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                self.behind[(tp.topic, tp.partition)] = max(0, (high or 0) - tp.offset)

    def _unusable(self, topic: str, partition: int, offset: int, exc: Exception) -> None:
        self.unusable += 1
        field = str(exc).split(" ", 1)[0] if isinstance(exc, Unusable) else "payload"
        self.metrics.unusable.labels(field).inc()
        left_out = self._throttle.admit(field)
        if left_out is not None:
            log.warning(
                "sessions: %s[%d]@%d left out: %s%s",
                topic,
                partition,
                offset,
                exc,
                self._throttle.suffix(left_out),
            )

    def idle(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self.checked_at >= ADVANCE_EVERY_S:
            self.checked_at = now
            # One that looked behind may have been a transaction marker behind: measured again.
            self._measure_lag(
                consumer, [tp for tp, n in self.behind.items() if n and tp in self.committer.sessionizers]
            )
            self._advance_quiet(now)
        self.metrics.open.set(sum(s.open_count() for s in self.committer.sessionizers.values()))
        if now >= self.next_flush_at:
            self.next_flush_at = now + self.settings.sessions_flush_age_s
            self._flush_or_back_off(consumer)

    def _advance_quiet(self, now: float) -> None:
        """Quiet partitions follow the wall clock (see ``streams.realtime_upstream``)."""
        timeout = self.settings.sessions_idle_timeout_s
        if not timeout:
            return
        drained: bool | None = None
        for tp, sessionizer in self.committer.sessionizers.items():
            since, clock = self.last_record.get(tp, (now, NO_TIME))
            quiet = now - since - timeout
            if quiet < 0 or clock == NO_TIME or self.behind.get(tp, 0) > 0:
                continue
            if drained is None:
                drained = self.upstream_drained()
            if not drained:
                return
            sessionizer.advance(clock + int(quiet * 1000))

    def stopping(self, consumer: Consumer) -> None:
        try:
            self._flush(consumer, None)
        except Exception:
            log.exception("sessions: final commit failed; the next owner replays it")

    # --- committing ------------------------------------------------------------------------------
    def _flush_or_back_off(self, consumer: Consumer) -> None:
        try:
            self._flush(consumer, None)
            self.error, self.backoff_s = None, 0.0
        except Exception as exc:
            self.metrics.errors.inc()
            self.backoff_s = min(max(1.0, self.backoff_s * 2), MAX_BACKOFF_S)
            self.error = f"commit to the lake failed, retrying in {self.backoff_s:.0f}s: {exc!r}"
            log.exception("sessions: commit failed; closed sessions kept, retrying in %.0fs", self.backoff_s)
            deadline = time.monotonic() + self.backoff_s
            while time.monotonic() < deadline and not self.should_stop():
                time.sleep(0.1)

    def _flush(self, consumer: Consumer, partitions: list[TP] | None) -> None:
        if not self.committer.pending():
            return
        started = time.perf_counter()
        flushed = self.committer.flush(partitions)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        for lane, count in flushed.by_lane.items():
            self.metrics.closed.labels(lane).inc(count)
        for tp in flushed.fenced:  # another writer's commit (or our own lost one): read on from the head
            start = self.committer.sessionizers[tp].start_offset
            try:
                consumer.seek(TopicPartition(*tp, OFFSET_BEGINNING if start is None else start))
            except KafkaException as exc:
                log.info("sessions: no seek for fenced %s[%s]: %s", *tp, exc)
        try:
            ConsumerOffsets(consumer).commit(self.committer.positions())
        except KafkaException as exc:  # lag monitoring only: the lake holds the truth
            log.info("sessions: group offsets not committed: %s", exc)


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Manual offsets (the lake's checkpoints are the truth); cooperative rebalances."""
    return confluent_config(
        settings,
        **{
            "group.id": f"{settings.app_id}.sessions",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "max.poll.interval.ms": 600_000,
        },
    )


class _StopSignal:
    def __init__(self) -> None:
        self.service: ConsumerService | None = None

    def __call__(self) -> bool:
        return self.service is not None and self.service.should_stop


def build_stage(
    settings: Settings, registry: CollectorRegistry, **service_kwargs: Any
) -> tuple[ConsumerService, SessionsHandler]:
    spec = SessionSpec(settings.sessions_gap_s * 1000, settings.sessions_allowed_lateness_s * 1000)
    lane_of = {settings.common_topic(lane): lane for lane in settings.lanes}
    committer = SessionCommitter(IcebergSessionTables(settings), spec, lane_of)
    stop = _StopSignal()
    handler = SessionsHandler(
        settings,
        committer,
        codec_for(settings).decode,
        SessionsMetrics(registry),
        RouterDrained(settings),
        stop,
    )
    service = ConsumerService(
        "sessions",
        consumer_config(settings),
        sorted(lane_of),
        handler,
        batch_wait_s=0.2,
        restart_on_failure=True,  # the catalog away while partitions are recovered: retried, never fatal
        stall_s=settings.kafka_consumer_stall_s,
        **service_kwargs,
    )
    stop.service = service
    return service, handler


def describe(service: ConsumerService, handler: SessionsHandler) -> dict[str, Any]:
    committer = handler.committer
    sessionizers = dict(committer.sessionizers)  # a copy: the consumer thread changes the dict
    return {
        "alive": service.started and service.failure is None,
        "assigned": len(sessionizers),
        "open": sum(s.open_count() for s in sessionizers.values()),
        "pending": sum(len(s.closed) for s in sessionizers.values()),
        "committed": committer.rows_committed,
        "late_events": sum(s.late for s in sessionizers.values()),
        "skipped_replayed": sum(s.skipped for s in sessionizers.values()),
        "unusable_events": handler.unusable,
        "error": handler.error,
    }


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Run the sessions stage with the app (a direct dependency, like the lake); serve ``/sessions``
    and the statistics API. The sessions table is an Iceberg table: with ``lake_format = "parquet"``
    the stage does not run (logged), the API answers from nothing."""
    register_stats(app, settings)
    if settings.lake_format != "iceberg":
        log.warning("sessions: the sessions table needs lake_format 'iceberg'; the stage does not run")
        return
    service, handler = build_stage(settings, registry, beacon=app.beacon)
    health_board(app).add(service.name, service.health, lambda: service.started)
    app.add_dependency(service)

    @app.page("/sessions")
    async def sessions_state(web: View, request: Request) -> Response:
        return web.json(describe(service, handler))
