"""The router: each lane's all-events topic → per-event topics, the common projection and the DLQ.

Delivery guarantee: **at-least-once, no commit past a failure.** The sequence that decides what is
durable before an input offset is committed lives in ``core.routing.commit.LaneCommitPath``
(classify → create the topics of newly admitted types → enqueue every derived record → once Kafka
acknowledged every record of the oldest in-flight batch, commit its next offsets). This module only
wires the real edges into it: ``connectors.kafka_admin.KafkaAdmin``, one idempotent acks=all
``connectors.router_producer.BulkProducer`` shared by the lanes, and each lane's consumer
(``streams.consumer.ConsumerOffsets``).

One :class:`~streams.consumer.ConsumerService` per lane (``router-<lane>``, consumer group
:func:`input_group_id`) feeds batches to a :class:`LaneHandler` on its consumer thread. A revoke or
a stop settles and commits the in-flight batches first; lost partitions are dropped uncommitted.
Any failure to make a batch durable (delivery failing past its retries, a topic the broker does not
answer for) propagates from the handler, crashes that service and so stops the worker with the
reason. Nothing is committed after it, so the failed batch and the ones after it are routed again
after a restart: duplicates downstream, never a gap. A refused offset commit (e.g. mid-rebalance)
is logged and counted, not fatal: its batch is durable and the next commit covers it. Input can
never stop the router: every bad record becomes a dead letter, including records Kafka refuses for
good.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.router_producer import BulkProducer, PendingDelivery
from connectors.wire import codec_for
from core.routing.classify import SourceRecord
from core.routing.commit import BatchStats, LaneCommitPath
from core.settings import Settings
from streams.consumer import BatchHandler, ConsumerOffsets, ConsumerService

log = logging.getLogger(__name__)

DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 65_536


class RouterMetrics:
    """The router's counters, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "highway_router_events_total", "Input events routed or dead-lettered", ["lane"], registry=registry
        )
        self.dead = Counter(
            "highway_router_dlq_total",
            "Events sent to the dead-letter topic",
            ["lane", "reason"],
            registry=registry,
        )
        self.new_topics = Counter(
            "highway_router_new_topics_total", "Per-event topics created", ["lane"], registry=registry
        )

    def observe(self, lane: str, stats: BatchStats) -> None:
        self.events.labels(lane).inc(stats.events)
        for reason, count in stats.reasons.items():
            self.dead.labels(lane, reason).inc(count)
        if stats.new_topics:
            self.new_topics.labels(lane).inc(stats.new_topics)


def source_record(message: Message) -> SourceRecord:
    kind, timestamp = message.timestamp()
    return SourceRecord(
        message.key(),
        message.value() or b"",
        message.partition() or 0,
        message.offset() or 0,
        timestamp if kind else None,
    )


class LaneHandler(BatchHandler):
    """One lane's side of its consumer service: every call goes to the lane's commit path."""

    def __init__(self, path: LaneCommitPath[Any]) -> None:
        self.path = path

    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        self.path.route([source_record(message) for message in messages], ConsumerOffsets(consumer))

    def idle(self, consumer: Consumer) -> None:
        if self.path.in_flight:  # settle what Kafka acknowledged meanwhile
            self.path.route([], ConsumerOffsets(consumer))

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.path.drain(ConsumerOffsets(consumer))

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group has moved on: commits would be refused, and the new owner routes these again.
        self.path.discard()

    def stopping(self, consumer: Consumer) -> None:
        self.path.drain(ConsumerOffsets(consumer))


def ensure_lane_topics(settings: Settings, admin: KafkaAdmin, lane: str) -> None:
    """The lane's input, common and dead-letter topics (the DLQ takes large originals)."""
    admin.ensure_topics([settings.all_events_topic(lane), settings.common_topic(lane)])
    admin.ensure_topics([settings.dlq_topic(lane)], config={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})


def input_group_id(settings: Settings) -> str:
    """The consumer group whose committed offsets say how far the router has routed."""
    return f"{settings.app_id}-router-input"


def consumer_config(settings: Settings) -> dict[str, Any]:
    return confluent_config(
        settings,
        **{
            "group.id": input_group_id(settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52_428_800,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        },
    )


def lane_commit_path(
    settings: Settings, lane: str, admin: KafkaAdmin, producer: BulkProducer, metrics: RouterMetrics
) -> LaneCommitPath[PendingDelivery]:
    """The lane's commit path on the real edges (blocking: lists the lane's known topics)."""
    codec = codec_for(settings, settings.all_events_topic(lane))
    path = LaneCommitPath(
        settings, lane, admin, producer, codec.decode, on_settled=lambda stats: metrics.observe(lane, stats)
    )
    log.info("router for lane %s: %d known event topics", lane, len(path.gate.known))
    return path


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """A consumer service per lane, each a dependency of the app; creates the lanes' fixed topics first.

    The services are direct dependencies of the app (started with its web server), not
    ``@app.service``s (started only once faust's own consumer group has settled): they do not use
    faust's consumer. A service's crash propagates to the app and stops the worker with its reason.
    """
    admin = KafkaAdmin(settings)
    producer = BulkProducer(settings, **{"message.timeout.ms": 60_000, "linger.ms": 5})
    metrics = RouterMetrics(registry)
    config = consumer_config(settings)
    for lane in settings.lanes:
        ensure_lane_topics(settings, admin, lane)
        handler = LaneHandler(lane_commit_path(settings, lane, admin, producer, metrics))
        service = ConsumerService(
            f"router-{lane}",
            config,
            [settings.all_events_topic(lane)],
            handler,
            batch_size=settings.router_batch_size,
            batch_wait_s=settings.router_batch_wait_s,
            beacon=app.beacon,
        )
        app.add_dependency(service)
