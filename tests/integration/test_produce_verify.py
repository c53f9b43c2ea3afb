"""The verify topic checks against hand-made router output on the real broker.

The topics are written here the way the router writes them (original bytes per event type, the
common projection, dead letters), with known faults, so the expected verdicts are exact.
"""

from __future__ import annotations

import pytest

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.envelope import common_projection, encode_json
from core.routing.naming import topic_name_for
from core.sim import MatchDaySimulator, SimConfig, TruthBuilder
from highway.verify import VerifyContext, registered_checks, run_checks
from tests.conftest import MakeSettings

pytestmark = pytest.mark.integration


def test_topic_checks_count_missing_duplicates_and_misrouted(make_settings: MakeSettings) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    config = SimConfig(start_ms=1_767_225_600_000, seed=9, users=300, events=3_000, event_types=12, lane=lane)
    events = [event for batch in MatchDaySimulator(config).batches() for event in batch]
    builder = TruthBuilder(lane)
    builder.add(events)
    truth = builder.build()
    checks = registered_checks(["per-event-topics", "common", "dlq"])

    def verdicts(allow_duplicates: bool = False) -> dict[str, tuple[str, int, int]]:
        context = VerifyContext(settings, truth, lane, allow_duplicates=allow_duplicates)
        return {r.name: (r.status, r.missing, r.duplicates) for r in run_checks(context, checks)}

    assert {status for status, _, _ in verdicts().values()} == {"not present"}

    topic_of = {name: settings.event_topic(lane, topic_name_for(name)) for name in truth.counts}
    admin = KafkaAdmin(settings)
    admin.ensure_topics([*topic_of.values(), settings.common_topic(lane), settings.dlq_topic(lane)])
    lost, doubled, misrouted = events[0], events[1], events[2]
    wrong_topic = next(t for name, t in topic_of.items() if name != misrouted["event_name"])
    with EventProducer(settings) as producer:
        for event in events:
            key = str(event["user_id"]).encode()
            if event is not lost:
                topic = wrong_topic if event is misrouted else topic_of[str(event["event_name"])]
                producer.produce_raw(topic, encode_json(event), key)
            producer.produce_raw(settings.common_topic(lane), encode_json(common_projection(event)), key)
        producer.produce_raw(topic_of[str(doubled["event_name"])], encode_json(doubled), b"k")

    results = {r.name: r for r in run_checks(VerifyContext(settings, truth, lane), checks)}
    per_event = results["per-event-topics"]
    assert (per_event.status, per_event.missing, per_event.duplicates) == ("FAIL", 2, 1)  # lost + misrouted
    assert "1 misrouted" in per_event.detail
    assert per_event.actual == 3_000
    assert (results["common"].status, results["common"].actual) == ("pass", 3_000)
    assert (results["dlq"].status, results["dlq"].actual) == ("pass", 0)

    # Duplicates alone pass under --allow-duplicates; missing events never do.
    assert verdicts(allow_duplicates=True)["per-event-topics"] == ("FAIL", 2, 1)
    with EventProducer(settings) as producer:
        producer.produce_raw(topic_of[str(lost["event_name"])], encode_json(lost), b"k")
        producer.produce_raw(topic_of[str(misrouted["event_name"])], encode_json(misrouted), b"k")
    assert verdicts(allow_duplicates=True)["per-event-topics"] == ("FAIL", 0, 1)  # still misrouted once
    assert verdicts()["per-event-topics"] == ("FAIL", 0, 1)
