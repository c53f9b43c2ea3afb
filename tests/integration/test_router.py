"""The router on the real broker, run as `highway worker --role router` subprocesses.

Simulator traffic lands per type (checked with `highway verify`'s checks); a new type gets its topic
within 5 s; hostile input is routed or dead-lettered count for count. Failures, restarts and kills:
``test_router_chaos``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from connectors.kafka_admin import KafkaAdmin
from connectors.producer import EventProducer
from core.routing.naming import event_topic_for
from core.settings import Settings
from core.sim import load_truth
from highway.verify.topics import read_topics
from tests.conftest import MakeSettings
from tests.integration.router_support import committed_all, produce, sample_event, verify
from tests.support import WorkerProcess, committed_counts, wait_until

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
EVENTS = 12_000  # enough for 200+ types with several events each under the simulator's Zipf law
UNUSUAL_NAMES = ["équipe_créée", "支付_成功", "Contest.Join", "emoji_🎉", "wallet add cash"]


def test_simulator_types_land_in_their_topics_and_a_new_type_within_5s(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    lane = settings.lanes[0]
    truth = tmp_path / "truth.json"
    produce(settings, events=EVENTS, event_types=220, truth=truth)
    assert len(load_truth(truth).counts) >= 200

    with WorkerProcess(settings, roles="router") as worker:
        worker.wait_healthy()
        wait_until(lambda: committed_all(settings), 180, 0.5, "router committed all input")
        results = verify(settings, truth)
        failed = [result for result in results.values() if not (result.passed and result.present)]
        assert not failed, failed
        assert results["per-event-topics"].actual == EVENTS

        # A never-seen type mid-stream: its topic exists, holding the event, within 5 s.
        new_name = f"brand_new_type_{lane}"
        new_topic = event_topic_for(settings, lane, new_name)
        with EventProducer(settings) as producer:
            producer.produce_events(settings.all_events_topic(lane), [sample_event(new_name, 1)])
            producer.flush()
        sent = time.monotonic()
        wait_until(
            lambda: (
                new_topic in KafkaAdmin(settings).list_topics()
                and committed_counts(settings, [new_topic])[new_topic]
            ),
            10,
        )
        assert time.monotonic() - sent < 5.0
        assert worker.alive()


def _hostile_corpus(lane: str) -> list[tuple[bytes, str]]:
    """(value, expected outcome): a reason code, or "routed"."""
    good = orjson.dumps(sample_event("contest_join", 0))
    corpus: list[tuple[bytes, str]] = [
        (b'{"event_name": "x", ', "malformed_json"),
        (b"not json at all 1", "malformed_json"),
        (b"", "malformed_json"),
        (b'{"event_name": "caf\xe9"}', "malformed_json"),  # invalid UTF-8
        (b"\xff\xfe\xfd", "malformed_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (good, "routed"),
        (good.replace(b'"contest_join"', b'"../../x"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'"..%2f"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'"' + b"n" * 300 + b'"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'""'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'"tab\\there"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'"nul\\u0000byte"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'"rtl\\u202eoverride"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b'".hidden"'), "invalid_event_name"),
        (good.replace(b'"contest_join"', b"123"), "bad_type"),
        (good.replace(b'"client_ts":', b'"client_time":'), "missing_field"),
        (good.replace(b'"user_id":', b'"userid":'), "missing_field"),
        (
            good.replace(b'"properties":{"i":0}', b'"properties":{"n":' + b"[" * 9 + b"]" * 9 + b"}"),
            "property_too_deep",
        ),
        (good.replace(b'"properties":{"i":0}', b'"properties":{"n":9223372036854775808}'), "bad_type"),
        (
            orjson.dumps({**sample_event("contest_join", 4), "server_ts": int(time.time() * 1000) + HOUR_MS}),
            "future_timestamp",
        ),
        (orjson.dumps({**sample_event("contest_join", 1), "client_ts": "yesterday"}), "bad_type"),
        (orjson.dumps({**sample_event("contest_join", 2), "event_id": "not-a-uuid"}), "bad_type"),
        (orjson.dumps({**sample_event("big_event", 3), "properties": {"pad": "x" * 2_000_000}}), "oversize"),
    ]
    for index, name in enumerate(
        ["équipe_créée", "支付_成功", "Contest.Join", "emoji_🎉", "wallet add cash"]
    ):
        corpus.append((orjson.dumps(sample_event(name, 10 + index)), "routed"))
    # a real producer's event: numeric user id, nested properties, no server_ts (the router stamps it)
    real_world = {**sample_event("lineup_saved", 20), "user_id": 123456789}
    real_world["properties"] = {"lineup": [{"player_id": f"p{i}", "captain": i == 0} for i in range(11)]}
    del real_world["server_ts"]
    corpus.append((orjson.dumps(real_world), "routed"))
    return corpus


def _headers(message: Message) -> dict[str, bytes]:
    found: Any = message.headers() or []
    return {str(key): value if isinstance(value, bytes) else b"" for key, value in found}


def _dlq_outcomes(settings: Settings) -> dict[bytes, list[str]]:
    dlq = settings.dlq_topic(settings.lanes[0])
    outcomes: dict[bytes, list[str]] = {}
    for message in read_topics(settings, [dlq]).get(dlq, []):
        headers = _headers(message)
        assert headers["source_topic"] == settings.all_events_topic(settings.lanes[0]).encode()
        assert int(headers["source_offset"]) >= 0
        assert headers["detail"]
        outcomes.setdefault(message.value() or b"", []).append(headers["reason"].decode())
    return outcomes


def test_hostile_input_is_routed_or_dead_lettered_count_for_count(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    cap = 100
    settings = make_settings(router_max_event_types=cap)
    lane = settings.lanes[0]
    source = settings.all_events_topic(lane)
    corpus = _hostile_corpus(lane)
    routed_names = {
        "contest_join",
        "équipe_créée",
        "支付_成功",
        "Contest.Join",
        "emoji_🎉",
        "wallet add cash",
        "lineup_saved",
    }

    with WorkerProcess(settings, roles="router") as worker:
        worker.wait_healthy()
        with EventProducer(settings) as producer:
            for index, (value, _) in enumerate(corpus):
                producer.produce_raw(source, value, f"k{index}".encode())
            producer.flush()
        wait_until(lambda: committed_all(settings), 60, 0.3, "hostile corpus routed")

        dead = _dlq_outcomes(settings)
        expected_dead = Counter(reason for _, reason in corpus if reason != "routed")
        assert Counter(reason for reasons in dead.values() for reason in reasons) == expected_dead
        for value, expected in corpus:
            if expected == "routed":
                assert value not in dead
            else:
                assert dead[value] == [expected], value[:80]
        for name in routed_names:
            topic = event_topic_for(settings, lane, name)
            messages = read_topics(settings, [topic])[topic]
            assert len(messages) == 1, name
            routed = messages[0]
            event = orjson.loads(routed.value() or b"")
            assert _headers(routed)["event_name"] == name.encode()
            assert routed.key() == event["user_id"].encode()
            assert routed.timestamp()[1] == event["server_ts"]
            if name == "lineup_saved":
                assert event["user_id"] == "123456789"
                assert len(event["properties"]["lineup"]) == 11

        # 10 000 distinct names in a burst: the lane's type cap admits what is left of it, the rest
        # is dead-lettered with event_type_quota, and nothing is lost. (The per-minute rate is the
        # same gate on a clock; its unit test drives the clock.)
        burst = [orjson.dumps(sample_event(f"burst_{i}", 100 + i)) for i in range(10_000)]
        with EventProducer(settings) as producer:
            for index, value in enumerate(burst):
                producer.produce_raw(source, value, f"b{index}".encode())
            producer.flush()
        wait_until(lambda: committed_all(settings), 120, 0.5, "burst routed")
        dead = _dlq_outcomes(settings)
        quota_dead = sum(1 for v in burst if dead.get(v) == ["event_type_quota"])
        burst_topics = KafkaAdmin(settings).list_topics(settings.event_topic_pattern(lane))
        burst_topics = [t for t in burst_topics if ".event.burst_" in t]
        assert len(burst_topics) == cap - len(routed_names)
        assert sum(committed_counts(settings, burst_topics).values()) == len(burst_topics)
        assert quota_dead + len(burst_topics) == len(burst)
        assert worker.alive()
