"""Verify checks on Kafka topics, and the helpers that read a topic to its end.

Checks (registered in this order):

* ``input`` — ``<lane>.events.all`` holds every simulated event_id once;
* ``per-event-topics`` — each type's ``<lane>.event.<name>`` topic holds exactly that type's ids
  (the topic name comes from ``highway.routing.naming.topic_name_for``); events found in the wrong
  type's topic count as misrouted and fail the check;
* ``common`` — ``<lane>.events.common`` holds every event_id once;
* ``dlq`` — ``<lane>.events.dlq`` is empty (simulator traffic is valid).

Topics are read with confluent-kafka from the low to the high watermark taken when reading starts
(``read_committed``: aborted transactional writes are not counted). Ids found in a topic that the
truth does not know (another run on the same lane) are shown in the detail but do not fail a check.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka_config import confluent_config
from highway.errors import SchemaError, TransientError
from highway.routing.naming import topic_name_for
from highway.settings import Settings
from highway.verify.framework import CheckResult, VerifyContext, reconcile, register_check
from schemas.wire import codec_for


def read_topics(
    settings: Settings, topics: Iterable[str], timeout_s: float = 120.0
) -> dict[str, list[Message]]:
    """Every message of the existing ``topics`` up to their current end; absent topics are omitted."""
    consumer = Consumer(
        confluent_config(
            settings,
            **{
                "group.id": f"highway-verify-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.max.bytes": 52_428_800,
            },
        )
    )
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        result: dict[str, list[Message]] = {}
        ends: dict[tuple[str, int], int] = {}
        assignment: list[TopicPartition] = []
        for topic in dict.fromkeys(topics):
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                continue
            result[topic] = []
            for partition in found.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s
                )
                if high > low:
                    assignment.append(TopicPartition(topic, partition, low))
                    ends[topic, partition] = high
        if assignment:
            consumer.assign(assignment)
            _consume_to_ends(consumer, ends, result, timeout_s)
        return result
    finally:
        consumer.close()


def _consume_to_ends(
    consumer: Consumer,
    ends: dict[tuple[str, int], int],
    result: dict[str, list[Message]],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(ends)
    while pending:
        for message in consumer.consume(num_messages=10_000, timeout=0.5):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise TransientError(f"reading {message.topic()} [{message.partition()}]: {error}")
            result[str(message.topic())].append(message)
        # position() moves past transaction markers too, which are never delivered as messages.
        positions = consumer.position([TopicPartition(t, p) for t, p in pending])
        for position in positions:
            if position.offset >= pending[position.topic, position.partition]:
                del pending[position.topic, position.partition]
        if pending and time.monotonic() > deadline:
            (topic, partition), end = next(iter(pending.items()))
            raise TransientError(
                f"could not read {len(pending)} partition(s) to their end within {timeout_s:.0f}s, "
                f"e.g. {topic} [{partition}] to offset {end}"
            )


def count_messages(settings: Settings, topic: str) -> int | None:
    """Messages in ``topic`` now (None when the topic does not exist)."""
    messages = read_topics(settings, [topic]).get(topic)
    return None if messages is None else len(messages)


def event_id_counts(settings: Settings, messages: Iterable[Message]) -> tuple[Counter[str], int]:
    """event_id multiset of decoded messages, and how many could not be decoded."""
    decode = codec_for(settings).decode
    ids: Counter[str] = Counter()
    undecodable = 0
    for message in messages:
        value = message.value()
        try:
            event = decode(value) if value is not None else None
        except SchemaError:
            event = None
        event_id = event.get("event_id") if event is not None else None
        if isinstance(event_id, str):
            ids[event_id] += 1
        else:
            undecodable += 1
    return ids, undecodable


def _read_cached(context: VerifyContext, topics: list[str]) -> dict[str, list[Message]]:
    missing = [topic for topic in topics if f"topic:{topic}" not in context.cache]
    if missing:
        found = read_topics(context.settings, missing)
        for topic in missing:
            context.cache[f"topic:{topic}"] = found.get(topic)
    return {t: context.cache[f"topic:{t}"] for t in topics if context.cache[f"topic:{t}"] is not None}


def _id_check(name: str, topic: str, context: VerifyContext) -> CheckResult:
    messages = _read_cached(context, [topic]).get(topic)
    if messages is None:
        return CheckResult.not_present(name, f"topic {topic} does not exist yet")
    ids, undecodable = event_id_counts(context.settings, messages)
    outcome = reconcile(context.truth.all_event_ids(), ids)
    detail = f"topic {topic}"
    if outcome.missing_sample:
        detail += f"; missing e.g. {', '.join(outcome.missing_sample)}"
    if outcome.unexpected:
        detail += f"; {outcome.unexpected} id(s) not in the truth (another run?)"
    if undecodable:
        detail += f"; {undecodable} undecodable message(s)"
    return CheckResult(
        name=name,
        passed=context.ids_pass(outcome.missing, outcome.duplicates) and undecodable == 0,
        expected=context.truth.events,
        actual=len(messages),
        missing=outcome.missing,
        duplicates=outcome.duplicates,
        detail=detail,
    )


@register_check
class InputTopicCheck:
    """The all-events topic holds every produced event exactly once."""

    name = "input"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        return [_id_check(self.name, context.settings.all_events_topic(context.lane), context)]


@register_check
class PerEventTopicsCheck:
    """Each event type's topic holds exactly that type's event_ids."""

    name = "per-event-topics"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        settings, truth, lane = context.settings, context.truth, context.lane
        topic_of = {name: settings.event_topic(lane, topic_name_for(name)) for name in truth.counts}
        found = _read_cached(context, sorted(set(topic_of.values())))
        if not found:
            return [CheckResult.not_present(self.name, "no per-event topic exists yet")]
        all_ids = truth.all_event_ids()
        missing = duplicates = misrouted = unexpected = undecodable = actual = 0
        worst: list[tuple[int, str]] = []
        for name, topic in topic_of.items():
            ids, bad = event_id_counts(settings, found.get(topic, []))
            expected = set(truth.event_ids[name])
            outcome = reconcile(expected, ids)
            wrong_type = sum(1 for event_id in ids if event_id not in expected and event_id in all_ids)
            missing += outcome.missing
            duplicates += outcome.duplicates
            misrouted += wrong_type
            unexpected += outcome.unexpected - wrong_type
            undecodable += bad
            actual += outcome.found
            if outcome.missing or outcome.duplicates or wrong_type:
                worst.append((outcome.missing + outcome.duplicates + wrong_type, name))
        parts = [f"{len(found)}/{len(set(topic_of.values()))} topics exist"]
        if worst:
            worst.sort(reverse=True)
            parts.append("worst: " + ", ".join(f"{name} ({n})" for n, name in worst[:3]))
        for count, label in (
            (misrouted, "misrouted"),
            (unexpected, "not in the truth"),
            (undecodable, "undecodable"),
        ):
            if count:
                parts.append(f"{count} {label}")
        return [
            CheckResult(
                name=self.name,
                passed=context.ids_pass(missing, duplicates) and misrouted == 0 and undecodable == 0,
                expected=truth.events,
                actual=actual,
                missing=missing,
                duplicates=duplicates,
                detail="; ".join(parts),
            )
        ]


@register_check
class CommonTopicCheck:
    """The common-attributes topic holds every event exactly once."""

    name = "common"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        return [_id_check(self.name, context.settings.common_topic(context.lane), context)]


def _dlq_reasons(messages: list[Message]) -> str:
    reasons: Counter[str] = Counter()
    for message in messages:
        headers: Any = message.headers() or []
        reason = next((value for key, value in headers if key in ("reason", "error_reason")), None)
        reasons[reason.decode(errors="replace") if isinstance(reason, bytes) else "?"] += 1
    return ", ".join(f"{reason}: {count}" for reason, count in reasons.most_common(3))


@register_check
class DeadLetterCheck:
    """Simulator traffic is valid: the dead-letter topic stays empty."""

    name = "dlq"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        topic = context.settings.dlq_topic(context.lane)
        messages = _read_cached(context, [topic]).get(topic)
        if messages is None:
            return [CheckResult.not_present(self.name, f"topic {topic} does not exist yet")]
        detail = f"topic {topic}" + (f"; reasons: {_dlq_reasons(messages)}" if messages else "")
        return [CheckResult(self.name, not messages, 0, len(messages), detail=detail)]
