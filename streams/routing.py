"""The router: each lane's all-events topic → per-event topics, the common projection and the DLQ.

What is durable before an input offset is committed lives in ``core.routing.commit.LaneCommitPath``
(classify → hold the events of types whose topic is not ready → send → commit a unit per
``router_commit_interval_s``). This module wires the real edges into it, per lane:

* ``connectors.router_output.RouterOutput`` — one producer; Kafka transactions in the default
  ``exactly_once`` mode (``send_offsets_to_transaction`` + ``commit_transaction``), flush-then-commit
  in ``at_least_once``;
* ``connectors.topic_provisioner.TopicProvisioner`` — new per-event topics, created off the hot path;
* a restartable :class:`~streams.consumer.ConsumerService` (``router-<lane>``, consumer group
  :func:`input_group_id`) feeding a :class:`LaneHandler` on its consumer thread.

A transient failure (broker slow or away, leaders late, a commit timing out) aborts the open unit
and restarts the lane's consumer with backoff from the committed offsets: the worker and its other
stages keep running, ``/health`` says ``degraded`` with the reason, and ``highway_router_restarts``
counts it. Only after ``router_failure_deadline_s`` without a
healthy run does ``/health`` say ``failed`` (503). Input can never stop the router: every bad record
becomes a dead letter, including records Kafka refuses for good.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import faust
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from connectors.instance_slot import claim_instance
from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.router_output import RouterOutput
from connectors.topic_provisioner import TopicProvisioner
from connectors.wire import codec_for
from core.routing.classify import SourceRecord
from core.routing.commit import LaneCommitPath, UnitStats
from core.routing.naming import router_input_group
from core.settings import Settings
from streams.consumer import BatchHandler, ConsumerOffsets, ConsumerService
from streams.health import health_board

log = logging.getLogger(__name__)

DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 65_536


class RouterMetrics:
    """The router's metrics, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"highway_router_{name}", doc, ["lane", *labels], registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"highway_router_{name}", doc, ["lane"], registry=registry)

        self.events = counter("events_total", "Input events routed or dead-lettered")
        self.dead = counter("dlq_total", "Events sent to the dead-letter topic", "reason")
        self.commits = counter("commits_total", "Units committed (transactions in exactly_once)")
        self.new_topics = gauge("new_topics_created", "Per-event topics this process created")
        self.restarts = gauge("restarts", "Times the lane's consumer restarted after a failure")
        self.topic_retries = gauge("topic_retries", "Topic provisioning rounds that failed and backed off")
        self.held = gauge("held_events", "Events waiting for their new topic")
        self.lag = gauge("lag", "Input events in this worker's all-events partitions not read yet")

    def observe(self, lane: str, stats: UnitStats) -> None:
        self.events.labels(lane).inc(stats.events)
        self.commits.labels(lane).inc()
        for reason, count in stats.reasons.items():
            self.dead.labels(lane, reason).inc(count)


def source_record(message: Message) -> SourceRecord:
    kind, timestamp = message.timestamp()
    return SourceRecord(
        message.key(),
        message.value() or b"",
        message.partition() or 0,
        message.offset() or 0,
        timestamp if kind else None,
    )


class ConsumerGroup(ConsumerOffsets):
    """The input group as the commit path sees it: offsets, or its metadata for a transaction."""

    def group_metadata(self) -> object:
        return self._consumer.consumer_group_metadata()


class LaneHandler(BatchHandler):
    """One lane's side of its consumer service: builds the commit path on first use, then feeds it.

    Building it (ensuring the lane's topics, listing the known ones) talks to the broker, so it
    happens on the consumer thread, where a broker that is away is a restartable failure.
    """

    def __init__(self, settings: Settings, lane: str, instance: str, metrics: RouterMetrics) -> None:
        self.settings = settings
        self.lane = lane
        self.metrics = metrics
        self.admin = KafkaAdmin(settings)
        self.output = RouterOutput(settings, lane, instance)
        self.provisioner = TopicProvisioner(
            self.admin, self.output.topic_ready, settings.topic_event_partitions
        )
        self.path: LaneCommitPath | None = None

    def _path(self) -> LaneCommitPath:
        if self.path is None:
            settings, lane = self.settings, self.lane
            ensure_lane_topics(settings, self.admin, lane)
            known = self.admin.list_topics(settings.event_topic_pattern(lane))
            self.path = LaneCommitPath(
                settings,
                lane,
                self.output,
                self.provisioner,
                codec_for(settings, settings.all_events_topic(lane)).decode,
                known,
                on_committed=lambda stats: self.metrics.observe(lane, stats),
            )
            log.info("router for lane %s: %d known event topics", lane, len(known))
        return self.path

    def starting(self) -> None:
        self._path()
        # Before reading: a transactional producer's init fences and aborts the open transaction a
        # killed predecessor (same transactional id) left, whose pending offsets would otherwise
        # keep this consumer from fetching its start offsets until the transaction timed out.
        self.output.producer()

    def batch(self, consumer: Consumer, messages: list[Message]) -> None:
        self._path().route([source_record(message) for message in messages], ConsumerGroup(consumer))

    def idle(self, consumer: Consumer) -> None:
        if self.path is not None:
            self.path.tick(ConsumerGroup(consumer))
            self.metrics.held.labels(self.lane).set(self.path.held.count)
        self.metrics.new_topics.labels(self.lane).set(self.provisioner.created)

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.path is not None:
            self.path.flush(ConsumerGroup(consumer))

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on, or this attempt failed: nothing more may be committed.
        if self.path is not None:
            self.path.discard()
        else:
            self.output.abort()

    def stopping(self, consumer: Consumer) -> None:
        self.revoked(consumer, [])

    def degraded(self) -> str | None:
        return self.provisioner.degraded or self.output.overdue()


def ensure_lane_topics(settings: Settings, admin: KafkaAdmin, lane: str) -> None:
    """The lane's input, common and dead-letter topics (the DLQ takes large originals)."""
    admin.ensure_topics([settings.all_events_topic(lane), settings.common_topic(lane)])
    admin.ensure_topics([settings.dlq_topic(lane)], config={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)})


def input_group_id(settings: Settings) -> str:
    """The consumer group whose committed offsets say how far the router has routed."""
    return router_input_group(settings.app_id)


def consumer_config(settings: Settings) -> dict[str, Any]:
    return confluent_config(
        settings,
        **{
            "group.id": input_group_id(settings),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.max.bytes": 52_428_800,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        },
    )


def register(app: faust.App, settings: Settings, registry: CollectorRegistry) -> None:
    """A restartable consumer service per lane, each a dependency of the app.

    The services are direct dependencies of the app (started with its web server), not
    ``@app.service``s (started only once faust's own consumer group has settled): they do not use
    faust's consumer.
    """
    metrics = RouterMetrics(registry)
    config = consumer_config(settings)
    instance = claim_instance(settings.state_dir, "router")
    board = health_board(app)
    for lane in settings.lanes:
        handler = LaneHandler(settings, lane, instance, metrics)
        # Static membership: a router restarted after kill -9 takes its partitions back at once,
        # instead of the group waiting out the dead member's session first.
        lane_config = {**config, "group.instance.id": f"{settings.router_instance_id or instance}-{lane}"}
        service = ConsumerService(
            f"router-{lane}",
            lane_config,
            [settings.all_events_topic(lane)],
            handler,
            batch_size=settings.router_batch_size,
            batch_wait_s=settings.router_batch_wait_s,
            restart_on_failure=True,
            stall_s=settings.kafka_consumer_stall_s,
            failure_deadline_s=settings.router_failure_deadline_s,
            beacon=app.beacon,
        )
        board.add(service.name, service.health, partial(getattr, service, "started"))
        metrics.restarts.labels(lane).set_function(partial(getattr, service, "restarts"))
        metrics.lag.labels(lane).set_function(partial(getattr, service, "lag"))
        metrics.topic_retries.labels(lane).set_function(partial(getattr, handler.provisioner, "retries"))
        app.add_dependency(service)
