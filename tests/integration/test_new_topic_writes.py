"""The first records sent to a just-created topic, on the real broker, under a CPU hog.

A new topic's metadata names its leader a moment before the leader loads the partition. A produce
request in between is refused (NOT_LEADER_OR_FOLLOWER) and queued for retry; when a later request
to the same partition, already in flight, succeeds first, librdkafka takes the refused records as
delivered ("implicitly acked") and the transaction commits without them. CI lost two events so.
The router's topic provisioner therefore reports a topic ready only once its leader serves it
(``KafkaAdmin.unserved``). Here the router's own producer (``RouterOutput``) and provisioner
write each topic as soon as it is reported ready, in pipelined requests, and the test asserts
that no request was refused and that every record committed. Before the fix, 40 of 300 topics
saw a refused first request under a hog, and one lost records.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from connectors.kafka_admin import KafkaAdmin
from connectors.router_output import RouterOutput
from connectors.topic_provisioner import TopicProvisioner
from tests.conftest import MakeSettings
from tests.support import committed_counts, cpu_hog

pytestmark = pytest.mark.integration

TOPICS = 60
RECORDS = 6


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_records_sent_as_soon_as_a_new_topic_is_ready_are_all_written(make_settings: MakeSettings) -> None:
    settings = make_settings(topic_event_partitions=1)
    lane = settings.lanes[0]
    lines = _Lines()
    librdkafka = logging.getLogger(f"test.librdkafka.{lane}")
    librdkafka.setLevel(logging.DEBUG)
    librdkafka.addHandler(lines)
    librdkafka.propagate = False

    def debug_producer(config: dict[str, Any]) -> Producer:
        return Producer({**config, "debug": "msg", "logger": librdkafka})

    output = RouterOutput(settings, lane, "new-topics", producer_factory=debug_producer)
    admin = KafkaAdmin(settings)
    provisioner = TopicProvisioner(admin, output.topic_ready, settings.topic_event_partitions)
    producer = output.producer()
    topics = [f"{lane}.event.first_write_{index}" for index in range(TOPICS)]
    try:
        with cpu_hog():
            for start in range(0, TOPICS, 10):
                group = topics[start : start + 10]
                producer.begin_transaction()
                provisioner.request(group)
                waiting, deadline = set(group), time.monotonic() + 60
                while waiting and time.monotonic() < deadline:
                    ready, refused_names = provisioner.take_results()
                    assert not refused_names
                    for topic in ready:  # at once, several requests in flight: as the router does
                        for index in range(RECORDS):
                            producer.produce(topic, b"record %d" % index, b"user")
                            producer.poll(0)
                            time.sleep(0.003)
                        waiting.discard(topic)
                    time.sleep(0.005)
                assert not waiting, f"topics not ready within 60s: {sorted(waiting)}"
                producer.commit_transaction(60)
    finally:
        provisioner.close()
        producer.flush(10)
        librdkafka.removeHandler(lines)
    refused = [line for line in lines.lines if "encountered error" in line]
    implicit = [line for line in lines.lines if "implicitly acked" in line]
    assert not refused, f"{len(refused)} produce requests refused, first: {refused[0]}"
    assert not implicit, implicit[0]
    counts = committed_counts(settings, topics)
    short = {topic: counts.get(topic, 0) for topic in topics if counts.get(topic, 0) != RECORDS}
    assert not short, f"topics missing records (of {RECORDS} each): {short}"
