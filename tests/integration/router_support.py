"""Helpers shared by the router's integration tests: traffic, commit progress, verification."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.simulator_feed import produce_simulated_traffic
from core.errors import TransientError
from core.settings import Settings
from core.sim import SimConfig, load_truth
from highway.verify.framework import CheckResult, VerifyContext, registered_checks, run_checks
from streams.routing import input_group_id

TOPIC_CHECKS = ["input", "per-event-topics", "common", "dlq"]


def produce(settings: Settings, events: int, event_types: int, truth: Path, seed: int = 7) -> None:
    lane = settings.lanes[0]
    start_ms = int(time.time() * 1000) - 3_600_000
    config = SimConfig(start_ms=start_ms, seed=seed, users=2_000, events=events, event_types=event_types)
    produce_simulated_traffic(settings, config, lane, truth_path=truth)


def input_progress(settings: Settings) -> tuple[dict[int, int], dict[int, int]] | None:
    """(end offset, router-committed offset) per partition of the lane's input; None while that is
    not known yet (the topic created a moment ago and not served, a leader not elected after a
    broker restart, the group coordinator loading)."""
    topic = settings.all_events_topic(settings.lanes[0])
    try:
        ends = KafkaAdmin(settings).end_offsets(topic)
    except TransientError:
        return None
    consumer = Consumer(confluent_config(settings, **{"group.id": input_group_id(settings)}))
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    except KafkaException:
        return None
    finally:
        consumer.close()
    return ends, {tp.partition: max(tp.offset, 0) for tp in committed}


def committed_all(settings: Settings) -> bool:
    """The router's consumer group has committed every input offset (all output acknowledged)."""
    progress = input_progress(settings)
    return progress is not None and all(progress[1][p] >= end for p, end in progress[0].items())


def verify(settings: Settings, truth: Path) -> dict[str, CheckResult]:
    context = VerifyContext(settings, load_truth(truth), settings.lanes[0])
    return {result.name: result for result in run_checks(context, registered_checks(TOPIC_CHECKS))}


def sample_event(name: str, index: int) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {
        "event_name": name,
        "event_id": f"00000000-0000-4000-8000-{index:012d}",
        "user_id": f"u{index % 97}",
        "session_id": "s",
        "lane": "x",
        "platform": "web",
        "app_version": "1.0.0",
        "device_id": "d",
        "client_ts": now,
        "server_ts": now,
        "properties": {"i": index},
    }
