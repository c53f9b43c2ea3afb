"""Batch classification and the new-type gate, without a broker."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from core.envelope import parse_json_event
from core.routing.classify import BatchClassifier, SourceRecord
from core.routing.gate import EVENT_NAME_NOT_ALLOWED, EVENT_TYPE_QUOTA, NewTypeGate
from core.settings import Settings

NOW_MS = 1_790_000_000_000


def event(name: str = "contest_join", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": name,
        "event_id": str(uuid.uuid4()),
        "user_id": "u42",
        "session_id": "s1",
        "lane": "default",
        "platform": "android",
        "app_version": "5.1.0",
        "device_id": "d1",
        "client_ts": NOW_MS - 500,
        "server_ts": NOW_MS - 100,
        "properties": {"contest_id": 7, "fee": 49.0},
    }
    base.update(overrides)
    return base


def records(values: list[bytes]) -> list[SourceRecord]:
    return [SourceRecord(b"k", value, 1, 100 + i, NOW_MS - 50) for i, value in enumerate(values)]


def classifier(gate: NewTypeGate | None = None, **settings: Any) -> BatchClassifier:
    return BatchClassifier(Settings(**settings), "default", gate or NewTypeGate(1000, 5000), parse_json_event)


def headers(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


def test_valid_event_is_routed_unchanged_and_projected() -> None:
    raw = orjson.dumps(event())
    out = classifier().classify(records([raw]), NOW_MS)
    assert [r.topic for r in out.routed] == ["default.event.contest_join"]
    routed = out.routed[0]
    assert routed.value is raw
    assert routed.key == b"u42"
    assert routed.timestamp_ms == NOW_MS - 100
    assert headers(routed) == {"event_name": b"contest_join"}
    projection = orjson.loads(out.projections[0].value)
    assert out.projections[0].topic == "default.events.common"
    assert out.projections[0].key == b"u42"
    assert "properties" not in projection
    assert projection["event_name"] == "contest_join"
    assert out.new_topics == {"default.event.contest_join"}
    assert out.dead == []


def test_every_bad_input_is_dead_lettered_with_its_reason() -> None:
    cases = {
        b"{not json": "malformed_json",
        b"\xff\xfe\x00garbage": "malformed_json",
        b"[1, 2]": "not_an_object",
        orjson.dumps({k: v for k, v in event().items() if k != "user_id"}): "missing_field",
        orjson.dumps(event(server_ts="yesterday")): "bad_type",
        orjson.dumps(event(name="../../x")): "invalid_event_name",
        orjson.dumps(event(name="x" * 300)): "invalid_event_name",
        orjson.dumps(event(name="bad\x07bell")): "invalid_event_name",
        orjson.dumps(event(properties={"pad": "x" * 2_000_000})): "oversize",
    }
    out = classifier().classify(records(list(cases)), NOW_MS)
    assert out.routed == []
    assert out.projections == []
    assert [headers(r)["reason"].decode() for r in out.dead] == list(cases.values())
    for i, dead in enumerate(out.dead):
        assert dead.topic == "default.events.dlq"
        assert dead.key == b"k"
        assert headers(dead)["source_topic"] == b"default.events.all"
        assert headers(dead)["source_partition"] == b"1"
        assert headers(dead)["source_offset"] == str(100 + i).encode()
        assert headers(dead)["detail"]
    assert out.dead[0].value == b"{not json"
    assert sum(out.reasons.values()) == len(cases)


def test_unicode_names_route_to_distinct_hashed_topics() -> None:
    names = ["équipe", "支付", "Contest.Join", "contest_join"]
    out = classifier().classify(records([orjson.dumps(event(name=n)) for n in names]), NOW_MS)
    assert len({r.topic for r in out.routed}) == 4
    assert [headers(r)["event_name"].decode() for r in out.routed] == names


def test_gate_rate_limits_new_types_per_sliding_minute() -> None:
    now = [0.0]
    gate = NewTypeGate(per_minute=3, max_types=100, clock=lambda: now[0])
    refusals = [gate.check(f"e{i}", f"t{i}") for i in range(5)]
    assert refusals[:3] == [None, None, None]
    assert refusals[3] is not None
    assert refusals[3][0] == EVENT_TYPE_QUOTA
    assert gate.check("e0", "t0") is None  # known types are never limited
    now[0] = 59.9
    assert gate.check("e5", "t5") is not None
    now[0] = 60.0
    assert gate.check("e5", "t5") is None


def test_gate_total_cap_counts_existing_topics() -> None:
    gate = NewTypeGate(per_minute=100, max_types=3, known_topics=["a", "b"])
    assert gate.check("c", "c") is None
    refused = gate.check("d", "d")
    assert refused is not None
    assert refused[0] == EVENT_TYPE_QUOTA
    assert "cap is 3" in refused[1]


def test_burst_of_distinct_names_is_quota_limited_count_for_count() -> None:
    gate = NewTypeGate(per_minute=50, max_types=5000, clock=lambda: 0.0)
    batch = records([orjson.dumps(event(name=f"burst_{i}")) for i in range(10_000)])
    out = classifier(gate).classify(batch, NOW_MS)
    assert len(out.routed) == 50
    assert len(out.new_topics) == 50
    assert out.reasons == {EVENT_TYPE_QUOTA: 9950}
    assert len(out.routed) + len(out.dead) == len(batch)


def test_allowlist_applies_to_known_and_new_types() -> None:
    gate = NewTypeGate(100, 100, allow_pattern=r"contest_.*", known_topics=["default.event.wallet_pay"])
    names = ["contest_join", "wallet_pay"]
    out = classifier(gate).classify(records([orjson.dumps(event(name=n)) for n in names]), NOW_MS)
    assert [r.topic for r in out.routed] == ["default.event.contest_join"]
    assert out.reasons == {EVENT_NAME_NOT_ALLOWED: 1}


def test_huge_originals_are_truncated_in_the_dlq() -> None:
    raw = b"x" * (4 * 1024 * 1024)
    out = classifier().classify(records([raw]), NOW_MS)
    dead = out.dead[0]
    assert headers(dead)["reason"] == b"oversize"
    assert headers(dead)["truncated_from"] == str(len(raw)).encode()
    assert len(dead.value) < len(raw)


def test_avro_wire_format_events_are_routed_with_their_bytes_unchanged() -> None:
    from connectors.wire import codec_for

    settings = Settings(kafka_schema_registry_url="mock://router-unit", kafka_wire_format="avro")
    codec = codec_for(settings, settings.all_events_topic("default"))
    raw = codec.encode(event())
    assert raw[:1] == b"\x00"  # Confluent framing
    gate = NewTypeGate(1000, 5000)
    out = BatchClassifier(settings, "default", gate, codec.decode).classify(
        records([raw, b"\x00junk"]), NOW_MS
    )
    assert [r.value for r in out.routed] == [raw]
    assert orjson.loads(out.projections[0].value)["event_name"] == "contest_join"
    assert len(out.dead) == 1
