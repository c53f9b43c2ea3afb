"""Where events missing from the router's output sit (printed by the fault suite when one is missing).

For each event in the truth but not in its per-event topic: its input record (all-events partition,
offset), its projection in the common topic, and whether a record of it was written to the per-event
topic at all — read *uncommitted*, so a record of an aborted or still open transaction shows up —
next to the router group's committed offsets and the router's warning lines. That tells apart a
transaction committed without its records, records written but aborted while their input offset was
committed, and records never written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, Message, TopicPartition

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.wire import codec_for
from core.errors import SchemaError
from core.routing.naming import event_topic_for
from core.settings import Settings
from core.sim.truth import Truth
from highway.verify.kafka_read import read_topics, topic_event_ids
from streams.routing import input_group_id

Place = tuple[int, int, int | None]
"""Where a record sits: partition, offset, timestamp (ms)."""


def _read_uncommitted(settings: Settings, topic: str) -> list[Message]:
    return read_topics(settings, [topic], isolation="read_uncommitted").get(topic, [])


def _places(settings: Settings, messages: Iterable[Message], wanted: set[str]) -> dict[str, list[Place]]:
    decode = codec_for(settings).decode
    found: dict[str, list[Place]] = {}
    for message in messages:
        try:
            event_id = decode(message.value() or b"").get("event_id")
        except SchemaError:
            continue
        if event_id in wanted:
            kind, timestamp = message.timestamp()
            found.setdefault(str(event_id), []).append(
                (message.partition() or 0, message.offset() or 0, timestamp if kind else None)
            )
    return found


def _committed(settings: Settings, topic: str) -> str:
    consumer = Consumer(confluent_config(settings, **{"group.id": input_group_id(settings)}))
    try:
        partitions = KafkaAdmin(settings).partitions(topic)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return ", ".join(f"[{tp.partition}] {tp.offset}" for tp in committed)
    finally:
        consumer.close()


def _warnings(logs: Iterable[Path], limit: int = 80) -> list[str]:
    lines: list[str] = []
    for path in sorted(logs, key=lambda p: p.stat().st_mtime):
        for line in path.read_text(errors="replace").splitlines():
            if "WARNING" in line or "ERROR" in line:
                lines.append(f"{path.name}: {line[:300]}")
    return lines[-limit:]


def missing_routed_events(settings: Settings, truth: Truth, router_logs: Iterable[Path]) -> str:
    """A report of the events the per-event topics lack (see the module docstring)."""
    lane = settings.lanes[0]
    topic_of = {name: event_topic_for(settings, lane, name) for name in truth.event_ids}
    found = topic_event_ids(settings, sorted(set(topic_of.values())))
    missing: dict[str, str] = {}
    for name, ids in truth.event_ids.items():
        summary = found.get(topic_of[name])
        have = summary.ids if summary is not None else {}
        missing.update((event_id, name) for event_id in ids if event_id not in have)
    if not missing:
        return "no event missing from the per-event topics"
    wanted = set(missing)
    source = settings.all_events_topic(lane)
    inputs = _places(settings, _read_uncommitted(settings, source), wanted)
    common = _places(settings, _read_uncommitted(settings, settings.common_topic(lane)), wanted)
    written: dict[str, list[Place]] = {}
    for topic in sorted({topic_of[name] for name in missing.values()}):
        written.update(_places(settings, _read_uncommitted(settings, topic), wanted))
    committed = _committed(settings, source)
    report = [f"{len(missing)} events missing from the per-event topics; router committed {committed}"]
    for event_id, name in sorted(missing.items(), key=lambda item: inputs.get(item[0], [(0, 0, 0)])[0]):
        report.append(
            f"  {event_id} ({name}): input {inputs.get(event_id)}, common {common.get(event_id)}, "
            f"per-event uncommitted {written.get(event_id, 'never written')}"
        )
    report.append("router warnings (last):")
    report.extend(f"  {line}" for line in _warnings(router_logs))
    return "\n".join(report)
