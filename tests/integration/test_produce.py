"""Producer, `highway produce` and `highway verify` on the real local broker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.kafka_admin import KafkaAdmin
from connectors.kafka_config import confluent_config
from connectors.producer import EventProducer
from connectors.simulator_feed import produce_simulated_traffic
from connectors.wire import codec_for
from core.envelope import parse_json_event
from core.envvars import settings_env
from core.errors import TransientError
from core.settings import Settings
from core.sim import MatchDaySimulator, SimConfig, load_truth
from highway.verify import VerifyContext, registered_checks, run_checks
from highway.verify.kafka_read import count_messages, event_id_counts, read_topics
from tests.conftest import MakeSettings

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000


def _events(count: int, seed: int = 3) -> list[dict[str, object]]:
    config = SimConfig(start_ms=START_MS, seed=seed, users=500, events=count, event_types=50)
    return [event for batch in MatchDaySimulator(config).batches() for event in batch]


def _cli(settings: Settings, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIGHWAY_")}
    env.update(settings_env(settings))
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "highway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_event_producer_round_trip_keyed_by_user(make_settings: MakeSettings) -> None:
    settings = make_settings()
    topic = settings.all_events_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    events = _events(5_000)
    with EventProducer(settings) as producer:
        assert producer.produce_events(topic, events) == 5_000
    assert (producer.delivered, producer.failed, producer.in_flight) == (5_000, 0, 0)

    messages = read_topics(settings, [topic])[topic]
    by_id = {str(event["event_id"]): event for event in events}
    seen: Counter[str] = Counter()
    partitions_of_user: defaultdict[str, set[int]] = defaultdict(set)
    for message in messages:
        decoded = parse_json_event(message.value() or b"")
        seen[decoded["event_id"]] += 1
        assert decoded == by_id[decoded["event_id"]]
        assert message.key() == decoded["user_id"].encode()
        partitions_of_user[decoded["user_id"]].add(message.partition() or 0)
    assert seen == Counter(list(by_id))  # every event exactly once
    assert all(len(partitions) == 1 for partitions in partitions_of_user.values())
    assert len({p for parts in partitions_of_user.values() for p in parts}) == 3


def test_avro_wire_format_through_the_broker(make_settings: MakeSettings) -> None:
    # No schema-registry server here: confluent-kafka's in-memory registry behind a mock:// URL.
    settings = make_settings(
        kafka_schema_registry_url=f"mock://it-{uuid.uuid4().hex[:8]}", kafka_wire_format="avro"
    )
    topic = settings.all_events_topic(settings.lanes[0])
    KafkaAdmin(settings).ensure_topics([topic])
    events = _events(500, seed=4)
    with EventProducer(settings) as producer:
        producer.produce_events(topic, events)
    messages = read_topics(settings, [topic])[topic]
    assert all((message.value() or b"")[:1] == b"\x00" for message in messages)
    decode = codec_for(settings).decode
    assert sorted((decode(m.value() or b"") for m in messages), key=lambda e: e["event_id"]) == sorted(
        events, key=lambda e: str(e["event_id"])
    )


def test_flush_names_topic_and_partition_of_a_failed_delivery(make_settings: MakeSettings) -> None:
    settings = make_settings()
    topic = f"{settings.lanes[0]}.tiny"
    KafkaAdmin(settings).ensure_topics([topic], partitions=1, config={"max.message.bytes": "2000"})
    producer = EventProducer(settings)
    producer.produce_raw(topic, b"x" * 100, b"k")
    producer.flush(30)  # alone: the broker would reject a batch holding both
    producer.produce_raw(topic, os.urandom(50_000), b"k")  # too large for the topic, even compressed
    with pytest.raises(TransientError) as info:
        producer.flush(30)
    producer.close()
    assert f"topic {topic!r} partition 0" in str(info.value)
    assert (producer.delivered, producer.failed) == (1, 1)


def test_highway_produce_writes_truth_and_verify_reconciles(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    truth_path = tmp_path / "truth.json.gz"
    produced = _cli(
        settings, "produce", "--events", "20000", "--users", "2000", "--seed", "5", "--truth", str(truth_path)
    )
    assert produced.returncode == 0, produced.stderr
    assert "20,000" in produced.stderr
    truth = load_truth(truth_path)
    assert truth.lane == lane
    assert sum(truth.counts.values()) == truth.events == 20_000

    topic = settings.all_events_topic(lane)
    assert count_messages(settings, topic) == truth.events
    ids, undecodable = event_id_counts(settings, read_topics(settings, [topic])[topic])
    assert undecodable == 0
    assert set(ids) == truth.all_event_ids()

    verified = _cli(settings, "verify", "--truth", str(truth_path), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert '"name":"input","passed":true' in verified.stdout
    assert "not present" in verified.stderr  # no router ran: per-event topics, common, DLQ are absent

    # Hostile bytes in the input are reported, not failed (the router's DLQ handling is judged elsewhere).
    with EventProducer(settings) as producer:
        producer.produce_raw(topic, b"\xff not an event", None)
    (input_result,) = run_checks(VerifyContext(settings, truth, lane), registered_checks(["input"]))
    assert (input_result.status, input_result.actual) == ("pass", 20_001)
    assert "1 undecodable" in input_result.detail

    # A duplicate and a dead letter make verify fail, and it says how many.
    first = read_topics(settings, [topic])[topic][0]
    dlq = settings.dlq_topic(lane)
    KafkaAdmin(settings).ensure_topics([dlq])
    with EventProducer(settings) as producer:
        producer.produce_raw(topic, first.value() or b"", first.key())
        producer.produce_raw(dlq, b"{not json", None)
    failed = _cli(settings, "verify", "--truth", str(truth_path), "--json", "--only", "input,dlq")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert '"name":"input","passed":false' in failed.stdout
    assert '"duplicates":1' in failed.stdout
    assert '"name":"dlq","passed":false,"expected":0,"actual":1' in failed.stdout


def test_paced_produce_follows_the_simulated_clock(make_settings: MakeSettings) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    config = SimConfig(
        start_ms=START_MS, users=200, events=None, duration_s=3, base_rate=1_000, surge_factor=1, lane=lane
    )
    summary = produce_simulated_traffic(settings, config, lane, rate=1_000)
    assert (summary.events, summary.delivered, summary.failed) == (3_000, 3_000, 0)
    assert summary.simulated_seconds == 3
    # The last second's first batch is due 2 s after the start; sending faster would break pacing.
    assert summary.seconds >= 1.9
    assert count_messages(settings, summary.topic) == 3_000


def test_a_faster_replay_keeps_every_event_and_its_pacing(make_settings: MakeSettings) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    config = SimConfig(
        start_ms=START_MS, users=200, events=None, duration_s=4, base_rate=500, surge_factor=1, lane=lane
    )
    summary = produce_simulated_traffic(settings, config, lane, rate=500, speed=2.0)
    assert (summary.events, summary.delivered, summary.simulated_seconds) == (2_000, 2_000, 4)
    # The last simulated second starts 3 s into the run, due 1.5 s after the start at 2x.
    assert summary.seconds >= 1.4
    assert count_messages(settings, summary.topic) == 2_000


def test_stopped_traffic_ends_early_and_its_truth_is_exactly_what_was_sent(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    config = SimConfig(
        start_ms=START_MS, users=200, events=None, duration_s=600, base_rate=100, surge_factor=1, lane=lane
    )
    stopping = threading.Event()
    stop = threading.Timer(1.5, stopping.set)
    stop.start()
    truth_path = tmp_path / "truth.json"
    summary = produce_simulated_traffic(
        settings, config, lane, rate=100, truth_path=truth_path, stop=stopping
    )
    assert summary.seconds < 10  # 600 s planned
    assert 0 < summary.events < 60_000
    assert summary.delivered == summary.events
    truth = load_truth(truth_path)
    assert sum(truth.counts.values()) == summary.events
    assert truth.options["stopped_early"] is True
    ids, undecodable = event_id_counts(settings, read_topics(settings, [summary.topic])[summary.topic])
    assert undecodable == 0
    assert set(ids) == truth.all_event_ids()
    assert sum(ids.values()) == summary.events


def test_reading_waits_for_a_transaction_open_when_it_starts(make_settings: MakeSettings) -> None:
    """A transaction's commit returns before its markers are written everywhere: a reader that
    stopped at the stable offset (what read_committed watermarks report) missed those records."""
    settings = make_settings()
    topic = f"{settings.lanes[0]}.txn-read"
    KafkaAdmin(settings).ensure_topics([topic], partitions=2)
    producer = Producer(confluent_config(settings, **{"transactional.id": f"txn-read-{topic}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for index in range(10):
        producer.produce(topic, f"v{index}".encode(), partition=index % 2)
    producer.flush(30)
    assert sum(KafkaAdmin(settings).end_offsets(topic, stable=True).values()) == 0
    assert sum(KafkaAdmin(settings).end_offsets(topic).values()) == 10

    timer = threading.Timer(1.5, lambda: producer.commit_transaction(30))
    timer.start()
    try:
        assert count_messages(settings, topic) == 10  # started while the transaction was open
    finally:
        timer.join()
    assert sum(KafkaAdmin(settings).end_offsets(topic, stable=True).values()) == 12  # + 2 markers
