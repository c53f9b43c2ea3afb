"""Verify checks on Kafka topics, and the helpers that read a topic to its end.

Checks (registered in this order):

* ``input`` — ``<lane>.events.all`` holds every simulated event_id once;
* ``per-event-topics`` — each type's ``<lane>.event.<name>`` topic holds exactly that type's ids
  (the topic name comes from ``core.routing.naming.topic_name_for``); events found in the wrong
  type's topic count as misrouted and fail the check;
* ``common`` — ``<lane>.events.common`` holds every event_id once;
* ``dlq`` — ``<lane>.events.dlq`` is empty (simulator traffic is valid).

Topics are read to their current end (``highway.verify.kafka_read``), each at most once per run.
Ids found in a topic that the truth does not know (another run on the same lane) are shown in the
detail but do not fail a check.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from confluent_kafka import Message

from core.routing.naming import topic_name_for
from highway.verify.framework import CheckResult, VerifyContext, reconcile, register_check
from highway.verify.kafka_read import TopicIds, count_messages, event_id_counts, read_topics, topic_event_ids

# The readers lived here first; tests elsewhere import them from this module.
__all__ = ["count_messages", "event_id_counts", "read_topics", "topic_event_ids"]


def _ids_cached(context: VerifyContext, topics: list[str]) -> dict[str, TopicIds]:
    """event_id multisets of the existing ``topics``, each read once per verify run."""
    unread = [topic for topic in topics if f"ids:{topic}" not in context.cache]
    if unread:
        found = topic_event_ids(context.settings, unread)
        for topic in unread:
            context.cache[f"ids:{topic}"] = found.get(topic)
    return {t: context.cache[f"ids:{t}"] for t in topics if context.cache[f"ids:{t}"] is not None}


def _truth_ids(context: VerifyContext) -> set[str]:
    ids: set[str] = context.cached("truth:all-ids", context.truth.all_event_ids)
    return ids


def _id_check(name: str, topic: str, context: VerifyContext, undecodable_fails: bool = True) -> CheckResult:
    summary = _ids_cached(context, [topic]).get(topic)
    if summary is None:
        return CheckResult.not_present(name, f"topic {topic} does not exist yet")
    undecodable = summary.undecodable
    outcome = reconcile(_truth_ids(context), summary.ids)
    detail = f"topic {topic}"
    if outcome.missing_sample:
        detail += f"; missing e.g. {', '.join(outcome.missing_sample)}"
    if outcome.unexpected:
        detail += f"; {outcome.unexpected} id(s) not in the truth (another run?)"
    if undecodable:
        detail += f"; {undecodable} undecodable message(s)"
    return CheckResult(
        name=name,
        passed=context.ids_pass(outcome.missing, outcome.duplicates)
        and not (undecodable and undecodable_fails),
        expected=context.truth.events,
        actual=summary.messages,
        missing=outcome.missing,
        duplicates=outcome.duplicates,
        detail=detail,
    )


@register_check
class InputTopicCheck:
    """The all-events topic holds every produced event exactly once.

    Undecodable messages there are reported but do not fail: hostile-input tests put them there on
    purpose, and the router's handling of them is judged by the other checks.
    """

    name = "input"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        topic = context.settings.all_events_topic(context.lane)
        return [_id_check(self.name, topic, context, undecodable_fails=False)]


@register_check
class PerEventTopicsCheck:
    """Each event type's topic holds exactly that type's event_ids."""

    name = "per-event-topics"

    def run(self, context: VerifyContext) -> list[CheckResult]:
        settings, truth, lane = context.settings, context.truth, context.lane
        topic_of = {name: settings.event_topic(lane, topic_name_for(name)) for name in truth.counts}
        found = _ids_cached(context, sorted(set(topic_of.values())))
        if not found:
            return [CheckResult.not_present(self.name, "no per-event topic exists yet")]
        all_ids = _truth_ids(context)
        empty = TopicIds()
        missing = duplicates = misrouted = unexpected = undecodable = actual = 0
        worst: list[tuple[int, str]] = []
        for name, topic in topic_of.items():
            summary = found.get(topic, empty)
            ids, bad = summary.ids, summary.undecodable
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
        messages = read_topics(context.settings, [topic]).get(topic)
        if messages is None:
            return [CheckResult.not_present(self.name, f"topic {topic} does not exist yet")]
        detail = f"topic {topic}" + (f"; reasons: {_dlq_reasons(messages)}" if messages else "")
        return [CheckResult(self.name, not messages, 0, len(messages), detail=detail)]
