"""The router: each lane's all-events topic → per-event topics, the common projection and the DLQ.

Delivery guarantee: **at-least-once, nothing lost.** Per lane, batches of input records are:

1. classified (``core.routing.classify``: routed + projection, or one dead letter each);
2. the per-event topics of newly admitted event types are created (idempotent when workers race);
3. every derived record is enqueued, in input order, on one idempotent acks=all producer
   (``connectors.router_producer``); up to ``MAX_BATCHES_IN_FLIGHT`` batches await their acks;
4. when Kafka has acknowledged every record of the oldest batch (failures re-sent), and only then,
   that batch's input offsets become committable.

A crash anywhere before step 4 leaves the offsets uncommitted, so the batch is consumed again after
a restart: its records may be duplicated downstream, never lost. Input can never stop the router:
every bad record becomes a dead letter, including records Kafka refuses for good. If delivery
keeps failing, the worker stops without committing.

Two engines feed this (``settings.router_consumer``):

* ``confluent`` (default): :class:`ConsumerLoop`, a confluent-kafka consumer thread per lane run by
  a faust service; it commits offsets explicitly after step 4. Its rate is bounded by produce acks,
  not by per-event Python overhead.
* ``faust``: a faust agent per lane (concurrency 1, see faust issue #606) taking batches with
  ``noack_take`` (faust marks nothing done by itself) and acking events after step 4, so faust
  commits them. Its ``CrashingSupervisor`` stops the worker on a delivery failure (faust would
  otherwise restart the agent past the un-acked batch, stalling commits). faust's per-event stream
  machinery (tasks per event in the aiokafka consumer path) bounds its rate (see ``bench/route.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import faust
import mode
from confluent_kafka import Consumer, KafkaException, TopicPartition
from faust.types import EventT
from prometheus_client import CollectorRegistry, Counter

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.router_producer import BulkProducer, PendingDelivery, Refused
from connectors.wire import codec_for
from core.errors import TerminalError, TransientError
from core.routing.classify import BatchClassifier, ClassifiedBatch, OutRecord, SourceRecord
from core.routing.gate import NewTypeGate
from core.settings import Settings

log = logging.getLogger(__name__)

TOPIC_CREATE_FAILED = "topic_create_failed"
PRODUCE_REFUSED = "produce_refused"
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 65_536
SLOW_BATCH_S = 0.5
MAX_BATCHES_IN_FLIGHT = 4

EVENTS_TOTAL = Counter("highway_router_events_total", "Input events routed or dead-lettered", ["lane"])
DLQ_TOTAL = Counter("highway_router_dlq_total", "Events sent to the dead-letter topic", ["lane", "reason"])
NEW_TOPICS_TOTAL = Counter("highway_router_new_topics_total", "Per-event topics created", ["lane"])


@dataclass
class PreparedBatch:
    events: int
    out: ClassifiedBatch
    records: list[OutRecord]
    pending: PendingDelivery
    created: int


@dataclass
class BatchStats:
    events: int
    routed: int
    dead: int
    new_topics: int


class LaneRouter:
    """Routes batches of one lane: :meth:`prepare` (blocking, in order), then ``settle*`` per batch."""

    def __init__(self, settings: Settings, lane: str, admin: KafkaAdmin, producer: BulkProducer) -> None:
        self.settings = settings
        self.lane = lane
        self.admin = admin
        self.producer = producer
        known = admin.list_topics(settings.event_topic_pattern(lane))
        self.gate = NewTypeGate(
            settings.router_new_types_per_minute,
            settings.router_max_event_types,
            settings.router_event_name_allow,
            known_topics=known,
        )
        codec = codec_for(settings, settings.all_events_topic(lane))
        self.classifier = BatchClassifier(settings, lane, self.gate, codec.decode)

    def prepare(self, batch: Sequence[SourceRecord]) -> PreparedBatch:
        """Classify, create new topics and enqueue every derived record (blocking; run in a thread)."""
        started = time.monotonic()
        out = self.classifier.classify(batch, int(time.time() * 1000))
        created = 0
        if out.new_topics:
            created = self._create_topics(out)
            ready = sorted(out.new_topics & {record.topic for record in out.routed})
            self.producer.wait_for_topics(ready)
        records = out.records()
        pending = self.producer.send(records)
        elapsed = time.monotonic() - started
        if elapsed > SLOW_BATCH_S:
            log.info("lane %s: %d events took %.3fs to classify and enqueue", self.lane, len(batch), elapsed)
        return PreparedBatch(len(batch), out, records, pending, created)

    async def settle(self, prepared: PreparedBatch) -> BatchStats:
        """Wait until Kafka acknowledged every record of ``prepared``; dead-letter refused ones."""
        refused = await self.producer.deliver_async(prepared.records, prepared.pending)
        if refused:
            return await asyncio.to_thread(self._finish, prepared, refused)
        return self._finish(prepared, refused)

    def settle_blocking(self, prepared: PreparedBatch) -> BatchStats:
        return self._finish(prepared, self.producer.complete(prepared.records, prepared.pending))

    def _finish(self, prepared: PreparedBatch, refused: list[Refused]) -> BatchStats:
        out = prepared.out
        if refused:
            failures = [(prepared.records[r.index], r.error) for r in refused]
            self._dead_letter_refused(out, failures)
        lane = self.lane
        EVENTS_TOTAL.labels(lane).inc(prepared.events)
        for reason, count in out.reasons.items():
            DLQ_TOTAL.labels(lane, reason).inc(count)
        if prepared.created:
            NEW_TOPICS_TOTAL.labels(lane).inc(prepared.created)
        return BatchStats(prepared.events, len(out.routed), len(out.dead), prepared.created)

    def _create_topics(self, out: ClassifiedBatch) -> int:
        try:
            return len(self.admin.ensure_topics(out.new_topics))
        except TransientError:
            log.warning("creating %d topics together failed; trying one by one", len(out.new_topics))
        failed: dict[str, str] = {}
        created = 0
        for topic in sorted(out.new_topics):
            try:
                created += len(self.admin.ensure_topics([topic]))
            except TransientError as exc:
                failed[topic] = str(exc)
        if failed:
            # If the broker itself is away this raises too, and the batch is retried after a restart;
            # if it answers, these names are refused for good (e.g. a metric-name collision).
            self.admin.list_topics()
            for topic in failed:
                self.gate.forget(topic)
            doomed = [(record, failed[record.topic]) for record in out.routed if record.topic in failed]
            self._move_to_dlq(out, doomed, TOPIC_CREATE_FAILED)
        return created

    def _dead_letter_refused(self, out: ClassifiedBatch, refused: list[tuple[OutRecord, str]]) -> None:
        if any(record.topic == self.classifier.dlq_topic for record, _ in refused):
            raise TerminalError(f"the dead-letter topic {self.classifier.dlq_topic!r} refused records")
        record, error = refused[0]
        log.warning(
            "lane %s: Kafka refused %d records for good (first: %s to %s); dead-lettering their events",
            self.lane,
            len(refused),
            error,
            record.topic,
        )
        letters = self._move_to_dlq(out, refused, PRODUCE_REFUSED)
        still = self.producer.deliver(letters)
        if still:
            raise TerminalError(f"the dead-letter topic refused {len(still)} records: {still[0].error}")

    def _move_to_dlq(
        self, out: ClassifiedBatch, failures: list[tuple[OutRecord, str]], reason: str
    ) -> list[OutRecord]:
        """Replace the routed+projection records of the failures' sources by dead letters."""
        sources: dict[int, tuple[SourceRecord, str]] = {}
        for record, error in failures:
            sources.setdefault(id(record.source), (record.source, error))
        out.routed = [r for r in out.routed if id(r.source) not in sources]
        out.projections = [r for r in out.projections if id(r.source) not in sources]
        letters = [self.classifier.dead_letter(source, reason, error) for source, error in sources.values()]
        out.dead.extend(letters)
        out.reasons[reason] += len(letters)
        return letters


def _source(event: EventT) -> SourceRecord:
    message = event.message
    value = message.value if isinstance(message.value, bytes) else b""
    key = message.key if isinstance(message.key, bytes) else None
    timestamp = int(message.timestamp * 1000) if message.timestamp else None
    return SourceRecord(key, value, message.partition, message.offset, timestamp)


def ensure_lane_topics(settings: Settings, admin: KafkaAdmin, lane: str) -> None:
    """The lane's input, common and dead-letter topics (the DLQ takes large originals)."""
    admin.ensure_topics([settings.all_events_topic(lane), settings.common_topic(lane)])
    admin.ensure_topics([settings.dlq_topic(lane)], config={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})


def input_group_id(settings: Settings, roles: Sequence[str]) -> str:
    """The consumer group whose committed offsets say how far the router has routed."""
    if settings.router_consumer == "faust":
        return settings.app_group_id(roles, ("router", "lake", "realtime"))
    return f"{settings.app_id}-router-input"  # not faust's group: a different group protocol


class ConsumerLoop:
    """The router's confluent-kafka engine for one lane: a consumer thread with explicit commits.

    Same batches, same :class:`LaneRouter`, same guarantee as the faust agent — at-least-once: a
    batch's offsets are committed only after Kafka acknowledged every record derived from it
    (oldest batch first; on a revoke, in-flight batches are finished and committed before the
    partitions go). It skips faust's per-event stream machinery, which bounds the agent's rate.
    A fatal error (delivery failing past its retries) stops the thread uncommitted and is
    re-raised by :func:`register`'s service, which stops the worker.
    """

    def __init__(self, settings: Settings, lane: str, admin: KafkaAdmin, producer: BulkProducer) -> None:
        self.settings = settings
        self.lane = lane
        self.admin = admin
        self.producer = producer
        self.source = settings.all_events_topic(lane)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"router-{self.lane}", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            log.exception("router for lane %s stopped without committing its in-flight batches", self.lane)
            self.error = exc

    def _loop(self) -> None:
        settings = self.settings
        router = LaneRouter(settings, self.lane, self.admin, self.producer)
        consumer = Consumer(
            confluent_config(
                settings,
                **{
                    "group.id": input_group_id(settings, ["router"]),
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.max.bytes": 52_428_800,
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 1_000,
                },
            )
        )
        in_flight: deque[tuple[dict[int, int], PreparedBatch]] = deque()

        def settle_oldest() -> None:
            next_offsets, prepared = in_flight.popleft()
            router.settle_blocking(prepared)
            parts = [TopicPartition(self.source, p, offset) for p, offset in next_offsets.items()]
            try:
                consumer.commit(offsets=parts, asynchronous=False)
            except KafkaException as exc:  # e.g. mid-rebalance: the batch will be routed again
                log.warning("lane %s: commit failed (%s); those events may be routed twice", self.lane, exc)

        def drain(*_: object) -> None:
            while in_flight:
                settle_oldest()

        consumer.subscribe([self.source], on_revoke=drain)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(settings.router_batch_size, timeout=settings.router_batch_wait_s)
                batch: list[SourceRecord] = []
                next_offsets: dict[int, int] = {}
                for message in messages:
                    if message.error() is not None:
                        log.warning("lane %s: consumer error %s", self.lane, message.error())
                        continue
                    partition, offset = message.partition() or 0, message.offset() or 0
                    kind, timestamp = message.timestamp()
                    batch.append(
                        SourceRecord(
                            message.key(),
                            message.value() or b"",
                            partition,
                            offset,
                            timestamp if kind else None,
                        )
                    )
                    next_offsets[partition] = offset + 1
                if batch:
                    in_flight.append((next_offsets, router.prepare(batch)))
                while in_flight and (in_flight[0][1].pending.done or len(in_flight) >= MAX_BATCHES_IN_FLIGHT):
                    settle_oldest()
            drain()
        finally:
            consumer.close()


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """Routing for every lane; creates the lanes' fixed topics first (blocking, at start-up).

    ``settings.router_consumer`` picks the engine: a faust agent per lane (``faust``), or a
    confluent-kafka consumer thread per lane run by a faust service (``confluent``).
    """
    admin = KafkaAdmin(settings)
    producer = BulkProducer(settings, **{"message.timeout.ms": 60_000, "linger.ms": 5})
    for lane in settings.lanes:
        ensure_lane_topics(settings, admin, lane)
    if settings.router_consumer == "faust":
        for lane in settings.lanes:
            _register_lane(app, settings, lane, admin, producer)
        return
    loops = [ConsumerLoop(settings, lane, admin, producer) for lane in settings.lanes]

    @app.service
    class RouterService(mode.Service):
        async def on_start(self) -> None:
            for loop in loops:
                loop.start()

        async def on_stop(self) -> None:
            for loop in loops:
                await asyncio.to_thread(loop.stop)

        @mode.Service.task
        async def _watch(self) -> None:
            while not self.should_stop:
                for loop in loops:
                    if loop.error is not None:
                        raise TerminalError(
                            f"router for lane {loop.lane} failed: {loop.error}"
                        ) from loop.error
                await self.sleep(0.5)


def _register_lane(
    app: faust.App, settings: Settings, lane: str, admin: KafkaAdmin, producer: BulkProducer
) -> None:
    source = app.topic(
        settings.all_events_topic(lane),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def route(stream: faust.StreamT[bytes]) -> None:
        """At-least-once: a batch's offsets become committable only after Kafka acked all its output.

        Batches are prepared (classified, enqueued) one after another, in input order; up to
        ``MAX_BATCHES_IN_FLIGHT`` wait for their acknowledgements at once, and are acked in order.
        """
        router = await asyncio.to_thread(LaneRouter, settings, lane, admin, producer)
        log.info("router for lane %s: %d known event topics", lane, len(router.gate.known))
        in_flight: asyncio.Queue[tuple[Sequence[EventT], asyncio.Future[BatchStats]]] = asyncio.Queue(
            MAX_BATCHES_IN_FLIGHT
        )

        async def take_and_prepare() -> None:
            batches = cast(faust.Stream[bytes], stream).noack_take(
                settings.router_batch_size, within=settings.router_batch_wait_s
            )
            async for taken in batches:
                events = cast(Sequence[EventT], taken)  # noack_take yields events, though typed as values
                prepared = await asyncio.to_thread(router.prepare, [_source(event) for event in events])
                await in_flight.put((events, asyncio.ensure_future(router.settle(prepared))))

        async def ack_in_order() -> None:
            while True:
                events, settled = await in_flight.get()
                await settled  # raises when delivery keeps failing: then nothing more is acked
                for event in events:
                    await stream.ack(event)

        await asyncio.gather(take_and_prepare(), ack_in_order())

    app.agent(
        source,
        name=f"highway.router.{lane}",
        concurrency=1,
        supervisor_strategy=mode.CrashingSupervisor,
    )(route)
